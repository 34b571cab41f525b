-- 性别代码维 GB/T 2261.1
select code as sex_code, name_zh as sex_name_zh, name_en as sex_name_en
from {{ ref('code_sex') }}
