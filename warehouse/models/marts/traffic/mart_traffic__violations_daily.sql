{#- 交通违法日统计：每日（违法时间）、乡镇（违法地村居所在）和违法行为代码的违法数、处理、罚款和记分 —
    traffic violations per day they were committed, town of the place and violation code:
    count, handled, fines and points. Incremental: a day is recomputed when its violations
    change (a late record, a violation handled). -#}
{{ incremental_mart('date_day', 'stg_traffic_police__violation', 'cast(violated_at as date)') }}

with violations as not materialized (
    select
        cast(violation.violated_at as date) as date_day,
        coalesce(village.town_code || '000', {{ county_division_code() }}) as division_code,
        violation.violation_code,
        violation.violation_no,
        violation.driver_person_key,
        violation.handled = '1' as is_handled,
        violation.fine,
        violation.points
    from {{ ref('stg_traffic_police__violation') }} as violation
    left join {{ ref('dim_division') }} as village
        on village.division_code = violation.village_code
    where violation.violated_at is not null
),

fingerprints as (
    {{ partition_fingerprints('violations', 'date_day') }}
),

changed as (
    {{ changed_partitions('fingerprints', 'date_day') }}
),

daily as (
    select
        violations.date_day,
        violations.division_code,
        violations.violation_code,
        count(*) as violations,
        count(*) filter (where violations.is_handled) as handled,
        count(distinct violations.driver_person_key) as drivers,
        coalesce(sum(violations.fine), 0) as fines_total,
        coalesce(sum(violations.points), 0) as points_total,
        any_value(changed._fingerprint) as _fingerprint
    from violations
    inner join changed on changed.date_day = violations.date_day
    group by all
)

select
    daily.date_day,
    daily.division_code,
    division.town_code,
    division.town_name,
    daily.violation_code,
    daily.violations,
    daily.handled,
    daily.violations - daily.handled as unhandled,
    daily.drivers,
    daily.fines_total,
    daily.points_total,
    daily._fingerprint
from daily
left join {{ ref('dim_division') }} as division on division.division_code = daily.division_code
