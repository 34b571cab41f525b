{#- 法人库 — the legal-entity library: one row per unified social credit code seen by any
    department (employers in social insurance and the housing fund, hazardous-chemical sites,
    ...), with the market-regulation register's attributes where the entity is registered in
    the county. What the code itself says (registering department, category, division) is
    decoded for every entity (GB 32100). -#}

{#- Incremental by entity: a build recomputes the entities whose rows it changed
    (_meta.touched_entities, macros/changes.sql). -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ forget_touched('entities', 'credit_code') }}",
) }}

with sightings as (
    select * from {{ ref('int_entity_sightings') }}
    {%- if is_incremental() %}
    where {{ is_touched('entities', 'credit_code') }}
    {%- endif %}
),

register as (
    select * from {{ ref('stg_market_regulation__entity') }}
),

entities as (
    select
        credit_code,
        list(distinct source_dataset order by source_dataset) as source_datasets,
        count(distinct source_dataset) as source_dataset_count,
        sum(records) as records,
        min(first_seen_date) as first_seen_date,
        max(last_seen_date) as last_seen_date
    from sightings
    group by credit_code
),

industries as (
    select * from {{ ref('dim_industry') }}
),

registrations as (
    select * from {{ ref('code_credit_registration') }}
),

divisions as (
    select * from {{ ref('dim_division') }}
)

select
    entities.credit_code,
    register.name as entity_name,
    register.entity_type,
    register.status,
    register.legal_rep_person_key,
    register.legal_rep_name_masked,
    register.industry_code,
    industries.industry_division,
    industries.section_code as industry_section,
    industries.section_name_zh as industry_section_name_zh,
    register.registered_capital,
    register.established_date,
    register.village_code,
    divisions.town_code,
    divisions.town_name,
    register.address,
    register.phone_masked,
    substr(entities.credit_code, 1, 1) as registration_department_code,
    registrations.name_zh as registration_department,
    substr(entities.credit_code, 2, 1) as registration_category_code,
    substr(entities.credit_code, 3, 6) as registration_division_code,
    register.credit_code is not null as in_register,
    entities.source_datasets,
    entities.source_dataset_count,
    entities.records,
    entities.first_seen_date,
    entities.last_seen_date,
    getvariable('countylake_build') as _staged_in
from entities
left join register on register.credit_code = entities.credit_code
left join industries
    on industries.industry_division = regexp_extract(register.industry_code, '([0-9]{2})', 1)
left join registrations
    on registrations.department_code = substr(entities.credit_code, 1, 1)
left join divisions on divisions.division_code = register.village_code
