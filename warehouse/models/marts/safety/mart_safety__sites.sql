{#- 危化品场所一览：每个场所一行，带企业、乡镇、危险源等级、状态和全部报警的统计 — one row per
    hazardous-chemical site with its entity, town, hazard class and status, and the statistics
    of all its sensor alarms (count, severe alarms, unresolved, response times, last alarm). -#}

with sites as (
    select * from {{ ref('stg_emergency__chemical_site') }}
),

alarms as (
    select
        site_id,
        count(*) as alarms,
        count(*) filter (where alarm_level = 1) as severe_alarms,
        count(*) filter (where resolved_at is null) as unresolved_alarms,
        round(median(case when acknowledged_at >= alarm_at
            then date_diff('second', alarm_at, acknowledged_at) end) / 60, 1)
            as median_acknowledge_minutes,
        round(median(case when resolved_at >= alarm_at
            then date_diff('second', alarm_at, resolved_at) end) / 60, 1)
            as median_resolve_minutes,
        min(alarm_at) as first_alarm_at,
        max(alarm_at) as last_alarm_at,
        count(distinct cast(alarm_at as date)) as days_with_alarms
    from {{ ref('stg_emergency__sensor_alarm') }}
    group by site_id
),

located as (
    select
        sites.site_id,
        coalesce(village.town_code, town.town_code) as town_code
    from sites
    left join {{ ref('dim_division') }} as village on village.division_code = sites.village_code
    left join {{ ref('dim_division') }} as town
        on town.division_code = sites.town_code || '000' and town.division_level = 'town'
)

select
    sites.site_id,
    sites.site_name,
    sites.credit_code,
    entities.entity_name,
    entities.status as entity_status,
    sites.hazard_class,
    sites.chemicals,
    sites.status,
    coalesce(located.town_code || '000', {{ county_division_code() }}) as division_code,
    located.town_code,
    division.town_name,
    sites.village_code,
    sites.longitude,
    sites.latitude,
    sites.sensor_count,
    coalesce(alarms.alarms, 0) as alarms,
    coalesce(alarms.severe_alarms, 0) as severe_alarms,
    coalesce(alarms.unresolved_alarms, 0) as unresolved_alarms,
    coalesce(alarms.days_with_alarms, 0) as days_with_alarms,
    alarms.median_acknowledge_minutes,
    alarms.median_resolve_minutes,
    alarms.first_alarm_at,
    alarms.last_alarm_at
from sites
left join located on located.site_id = sites.site_id
left join alarms on alarms.site_id = sites.site_id
left join {{ ref('base_entities') }} as entities on entities.credit_code = sites.credit_code
left join {{ ref('dim_division') }} as division
    on division.division_code = coalesce(located.town_code || '000', {{ county_division_code() }})
