{#- 远程会诊分层级日统计（全县）：每日每个医疗层级发起和承接的会诊 — consultations per day and
    level of care, county-wide: requested by institutions of the level and given by them. Read
    by the province exchange (key date_day, care_level). Small: rebuilt from the daily mart. -#}

with daily as (
    select * from {{ ref('mart_health__consultations_daily') }}
),

requested as (
    select
        date_day,
        requesting_level as care_level,
        sum(consultations) as consultations_requested,
        sum(completed) as completed_requested
    from daily
    group by all
),

given as (
    select date_day, consulting_level as care_level, sum(consultations) as consultations_given
    from daily
    group by all
),

grid as (
    select date_day, care_level from requested
    union
    select date_day, care_level from given
)

select
    grid.date_day,
    grid.care_level,
    level.care_level_name_zh,
    level.care_level_name_en,
    cast(coalesce(requested.consultations_requested, 0) as bigint) as consultations,
    cast(coalesce(requested.completed_requested, 0) as bigint) as completed,
    cast(coalesce(given.consultations_given, 0) as bigint) as consultations_given
from grid
left join requested
    on requested.date_day = grid.date_day and requested.care_level = grid.care_level
left join given on given.date_day = grid.date_day and given.care_level = grid.care_level
left join {{ ref('dim_care_level') }} as level on level.care_level = grid.care_level
