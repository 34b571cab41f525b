{#- 一企一档：每个统一社会信用代码一行——哪些部门、哪些数据集知道这个主体，记录数，最早和最近出现，
    另有参保职工、公积金缴存人、危化品场所和登记事项 — the cross-department profile of each
    entity (one row per credit code): which departments and datasets know it, their records,
    first and last seen; with its register attributes, insured employees in the newest
    contribution month, housing-fund depositors, hazardous-chemical sites and registration
    events.

    Incremental by entity: a build recomputes the entities whose rows it changed
    (_meta.touched_entities: their sightings, register record, contributions, deposits, sites
    or registration events), and every entity when the newest contribution month changed. A
    department renamed in the contracts makes the next build a full refresh. -#}
{{ incremental_mart('credit_code', 'int_entity_sightings', 'credit_code', touched='entities') }}

{#- the entities to compute: the touched ones, or all of them in a new month -#}
{%- set everyone = '(select new_month from newest_month)' if is_incremental() else 'true' %}

with newest_month as (
    select
        max(contribution_month) as contribution_month,
        {%- if is_incremental() %}
        max(contribution_month) is distinct from (select max(insured_month) from {{ this }})
        {%- else %}
        true
        {%- endif %} as new_month
    from {{ ref('stg_hrss__insured_person') }}
),

departments as (
    -- each system's department as its contract names it
    {{ departments() }}
),

sightings as (
    -- per credit_code and dataset (a dataset may hold several columns naming the same one)
    select
        sightings.credit_code,
        sightings.source_dataset,
        sum(sightings.records) as records,
        min(sightings.first_seen_date) as first_seen_date,
        max(sightings.last_seen_date) as last_seen_date,
        any_value(coalesce(departments.dept_code, split_part(sightings.source_dataset, '.', 1)))
            as dept_code,
        any_value(coalesce(departments.dept_name, split_part(sightings.source_dataset, '.', 1)))
            as dept_name
    from {{ ref('int_entity_sightings') }} as sightings
    left join departments on departments.system = split_part(sightings.source_dataset, '.', 1)
    where ({{ is_touched('entities', 'sightings.credit_code') }} or {{ everyone }})
    group by sightings.credit_code, sightings.source_dataset
),

profiles as (
    -- lists sorted after aggregating (cheaper than ordered aggregates)
    select
        credit_code,
        count(distinct dept_code) as department_count,
        list_sort(list_distinct(list(dept_name))) as departments,
        count(*) as dataset_count,
        list_sort(list(source_dataset)) as datasets,
        map_from_entries(list_sort(list(struct_pack(k := source_dataset, v := records))))
            as records_by_dataset,
        sum(records) as records,
        min(first_seen_date) as first_seen_date,
        max(last_seen_date) as last_seen_date
    from sightings
    group by credit_code
),

insured as (
    select insured.employer_credit_code as credit_code, count(distinct insured.person_key) as persons
    from {{ ref('stg_hrss__insured_person') }} as insured
    inner join newest_month on newest_month.contribution_month = insured.contribution_month
    where insured.employer_credit_code is not null
      and ({{ is_touched('entities', 'insured.employer_credit_code') }} or {{ everyone }})
    group by all
),

depositors as (
    select employer_credit_code as credit_code, count(distinct person_key) as persons
    from {{ ref('stg_housing_fund__deposit') }}
    where employer_credit_code is not null
      and ({{ is_touched('entities', 'employer_credit_code') }} or {{ everyone }})
    group by all
),

sites as (
    select credit_code, count(*) as sites, count(*) filter (where status = '在产') as sites_operating
    from {{ ref('stg_emergency__chemical_site') }}
    where ({{ is_touched('entities', 'credit_code') }} or {{ everyone }})
    group by all
),

events as (
    select credit_code, count(*) as events, max(changed_at) as last_event_at
    from {{ ref('stg_market_regulation__entity_change') }}
    where ({{ is_touched('entities', 'credit_code') }} or {{ everyone }})
    group by all
)

select
    profiles.credit_code,
    entities.entity_name,
    entities.entity_type,
    entities.status,
    entities.in_register,
    entities.registration_department,
    entities.industry_section,
    entities.town_code,
    entities.town_name,
    entities.legal_rep_person_key,
    entities.legal_rep_name_masked,
    profiles.department_count,
    profiles.departments,
    profiles.dataset_count,
    profiles.datasets,
    profiles.records_by_dataset,
    profiles.records,
    profiles.first_seen_date,
    profiles.last_seen_date,
    newest_month.contribution_month as insured_month,
    coalesce(insured.persons, 0) as insured_employees,
    coalesce(depositors.persons, 0) as housing_fund_depositors,
    coalesce(sites.sites, 0) as chemical_sites,
    coalesce(sites.sites_operating, 0) as chemical_sites_operating,
    coalesce(events.events, 0) as registration_events,
    events.last_event_at
from profiles
inner join {{ ref('base_entities') }} as entities on entities.credit_code = profiles.credit_code
cross join newest_month
left join insured on insured.credit_code = profiles.credit_code
left join depositors on depositors.credit_code = profiles.credit_code
left join sites on sites.credit_code = profiles.credit_code
left join events on events.credit_code = profiles.credit_code
