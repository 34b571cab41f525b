-- 法人库历史 (SCD2): the register's status, type, name, village and legal representative per version
select
    history.credit_code,
    history.name as entity_name,
    history.entity_type,
    history.status,
    history.dbt_is_deleted = 'True' as is_deleted,
    history.village_code,
    history.legal_rep_person_key,
    history.dbt_valid_from as valid_from,
    history.dbt_valid_to as valid_to,
    history.dbt_valid_to is null as is_current,
    history.dbt_scd_id as version_id
from {{ ref('snap_entity_register') }} as history
