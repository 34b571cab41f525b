-- 民族代码维 GB/T 3304 (56 groups and the "other" codes in use)
select code as ethnicity_code, name_zh as ethnicity_name_zh, name_en as ethnicity_name_en, is_standard
from {{ ref('code_ethnicity') }}
