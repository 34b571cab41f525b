{#- 危化品监测报警日统计：每日、乡镇（场所所在）、报警类型和级别的报警数、确认和消警时长 —
    sensor alarms at hazardous-chemical sites per day, town of the site, alarm type and level,
    with the time to acknowledge and to resolve. Incremental: a day is recomputed when its
    alarms change. -#}
{{ incremental_mart('date_day', 'stg_emergency__sensor_alarm', 'cast(alarm_at as date)') }}

with sites as (
    select
        site.site_id,
        coalesce(village.town_code, town.town_code) as town_code
    from {{ ref('stg_emergency__chemical_site') }} as site
    left join {{ ref('dim_division') }} as village on village.division_code = site.village_code
    left join {{ ref('dim_division') }} as town
        on town.division_code = site.town_code || '000' and town.division_level = 'town'
),

alarms as not materialized (
    select
        cast(alarm.alarm_at as date) as date_day,
        coalesce(sites.town_code || '000', {{ county_division_code() }}) as division_code,
        alarm.alarm_type,
        alarm.alarm_level,
        alarm.alarm_id,
        alarm.site_id,
        alarm.acknowledged_at is not null as is_acknowledged,
        alarm.resolved_at is not null as is_resolved,
        case when alarm.acknowledged_at >= alarm.alarm_at
            then date_diff('second', alarm.alarm_at, alarm.acknowledged_at)
        end as acknowledge_s,
        case when alarm.resolved_at >= alarm.alarm_at
            then date_diff('second', alarm.alarm_at, alarm.resolved_at)
        end as resolve_s
    from {{ ref('stg_emergency__sensor_alarm') }} as alarm
    left join sites on sites.site_id = alarm.site_id
    where alarm.alarm_at is not null
),

fingerprints as (
    {{ partition_fingerprints('alarms', 'date_day') }}
),

changed as (
    {{ changed_partitions('fingerprints', 'date_day') }}
),

daily as (
    select
        alarms.date_day,
        alarms.division_code,
        alarms.alarm_type,
        alarms.alarm_level,
        count(*) as alarms,
        count(distinct alarms.site_id) as sites_alarming,
        count(*) filter (where alarms.is_acknowledged) as acknowledged,
        count(*) filter (where alarms.is_resolved) as resolved,
        round(median(alarms.acknowledge_s) / 60, 1) as median_acknowledge_minutes,
        round(quantile_cont(alarms.acknowledge_s, 0.9) / 60, 1) as p90_acknowledge_minutes,
        round(median(alarms.resolve_s) / 60, 1) as median_resolve_minutes,
        round(quantile_cont(alarms.resolve_s, 0.9) / 60, 1) as p90_resolve_minutes,
        any_value(changed._fingerprint) as _fingerprint
    from alarms
    inner join changed on changed.date_day = alarms.date_day
    group by all
)

select
    daily.date_day,
    daily.division_code,
    division.town_code,
    division.town_name,
    daily.alarm_type,
    daily.alarm_level,
    case daily.alarm_level when 1 then '高高报' when 2 then '高报' end as alarm_level_name,
    daily.alarms,
    daily.sites_alarming,
    daily.acknowledged,
    daily.resolved,
    daily.alarms - daily.resolved as unresolved,
    daily.median_acknowledge_minutes,
    daily.p90_acknowledge_minutes,
    daily.median_resolve_minutes,
    daily.p90_resolve_minutes,
    daily._fingerprint
from daily
left join {{ ref('dim_division') }} as division on division.division_code = daily.division_code
