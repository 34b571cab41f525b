{#- 市场主体登记事项日统计：每日（核准时间）、乡镇（主体住所）和事项（设立/变更/注销）的登记事项数 —
    registration events (establishment, change, cancellation) per day approved, town of the
    entity's registered address and kind of event. Incremental: a day is recomputed when its
    events change or an entity moves town. -#}
{{ incremental_mart('date_day', 'stg_market_regulation__entity_change', 'cast(changed_at as date)') }}

with events as not materialized (
    select
        cast(event.changed_at as date) as date_day,
        coalesce(village.town_code || '000', {{ county_division_code() }}) as division_code,
        event.change_type,
        event.change_id,
        event.credit_code,
        entity.entity_type
    from {{ ref('stg_market_regulation__entity_change') }} as event
    left join {{ ref('base_entities') }} as entity on entity.credit_code = event.credit_code
    left join {{ ref('dim_division') }} as village on village.division_code = entity.village_code
    where event.changed_at is not null
),

fingerprints as (
    {{ partition_fingerprints('events', 'date_day') }}
),

changed as (
    {{ changed_partitions('fingerprints', 'date_day') }}
),

daily as (
    select
        events.date_day,
        events.division_code,
        events.change_type,
        count(*) as events,
        count(distinct events.credit_code) as entities,
        count(*) filter (where events.entity_type = '企业') as enterprise_events,
        count(*) filter (where events.entity_type = '个体工商户') as individual_business_events,
        any_value(changed._fingerprint) as _fingerprint
    from events
    inner join changed on changed.date_day = events.date_day
    group by all
)

select
    daily.date_day,
    daily.division_code,
    division.town_code,
    division.town_name,
    daily.change_type,
    daily.events,
    daily.entities,
    daily.enterprise_events,
    daily.individual_business_events,
    daily._fingerprint
from daily
left join {{ ref('dim_division') }} as division on division.division_code = daily.division_code
