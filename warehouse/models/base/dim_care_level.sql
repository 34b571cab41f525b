-- 医疗层级维 1-5
select level as care_level, name_zh as care_level_name_zh, name_en as care_level_name_en
from {{ ref('code_care_level') }}
