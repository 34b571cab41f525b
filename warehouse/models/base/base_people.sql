{#- 人口库 — the people library: one row per person seen by any department, keyed by the
    pseudonym of the citizen ID number. Attributes come from the household register (public
    security) where the person is registered; otherwise only what the ID number itself tells
    through its mask (sex, from the 17th character) and the departments' masked names. -#}

{#- Incremental by person: a build recomputes the people whose rows it changed
    (_meta.touched_people, macros/changes.sql): their sightings, register record or household. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=["{{ keep_towns_before() }}", "{{ forget_touched('people', 'person_key') }}"],
    post_hook="{{ note_moved_people() }}",
) }}

with sightings as (
    select * from {{ ref('int_person_sightings') }}
    {%- if is_incremental() %}
    where {{ is_touched('people', 'person_key') }}
    {%- endif %}
),

register as (
    select * from {{ ref('stg_public_security__resident') }}
),

household_heads as (
    select distinct head_person_key as person_key
    from {{ ref('stg_public_security__household') }}
    where head_person_key is not null
),

divisions as (
    select * from {{ ref('dim_division') }}
),

people as (
    select
        person_key,
        min(id_number_masked) as id_number_masked,
        first(name_masked order by last_seen_date desc, source_dataset, source_column)
            filter (where name_masked is not null) as name_masked,
        list(distinct source_dataset order by source_dataset) as source_datasets,
        count(distinct source_dataset) as source_dataset_count,
        sum(records) as records,
        min(first_seen_date) as first_seen_date,
        max(last_seen_date) as last_seen_date
    from sightings
    group by person_key
)

select
    people.person_key,
    people.id_number_masked,
    coalesce(register.name_masked, people.name_masked) as name_masked,
    coalesce(
        register.sex,
        case
            when regexp_full_match(substr(people.id_number_masked, 17, 1), '[0-9]')
                then case when cast(substr(people.id_number_masked, 17, 1) as integer) % 2 = 1
                          then '1' else '2' end
        end
    ) as sex,
    case
        when register.sex is not null then 'register'
        when regexp_full_match(substr(people.id_number_masked, 17, 1), '[0-9]') then 'id_number'
    end as sex_source,
    register.birth_date,
    register.ethnicity,
    register.village_code,
    divisions.town_code,
    divisions.town_name,
    divisions.village_name,
    register.address_masked,
    register.phone_masked,
    register.status as register_status,
    register.updated_at as register_updated_at,
    register.person_key is not null as in_register,
    household_heads.person_key is not null as is_household_head,
    people.source_datasets,
    people.source_dataset_count,
    people.records,
    people.first_seen_date,
    people.last_seen_date,
    getvariable('countylake_build') as _staged_in
from people
left join register on register.person_key = people.person_key
left join household_heads on household_heads.person_key = people.person_key
left join divisions on divisions.division_code = register.village_code
