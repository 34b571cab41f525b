-- 人口库历史 (SCD2): the register's village, masked address and status per version
select
    history.person_key,
    history.village_code,
    divisions.town_code,
    history.address_masked,
    history.status,
    history.dbt_is_deleted = 'True' as is_deleted,
    history.updated_at as source_updated_at,
    history.dbt_valid_from as valid_from,
    history.dbt_valid_to as valid_to,
    history.dbt_valid_to is null as is_current,
    history.dbt_scd_id as version_id
from {{ ref('snap_people_register') }} as history
left join {{ ref('dim_division') }} as divisions
    on divisions.division_code = history.village_code
