{#- 12345 热线工单日统计：每日、乡镇（事发村居所在）、诉求类别和承办单位的工单量、响应和办结时长、满意度 —
    12345 hotline tickets per day of the call, town of the incident, category and handling
    department: volume, time to respond and to resolve, satisfaction. Incremental: a day is
    recomputed when its tickets change (a late export or a re-delivered ticket). -#}
{{ incremental_mart('date_day', 'stg_hotline__ticket', 'cast(received_at as date)') }}

with tickets as not materialized (
    select
        cast(ticket.received_at as date) as date_day,
        coalesce(village.town_code || '000', {{ county_division_code() }}) as division_code,
        ticket.category,
        coalesce(ticket.handling_department, '（未指派）') as handling_department,
        ticket.ticket_no,
        ticket.status,
        ticket.satisfaction,
        ticket.responded_at is not null as is_responded,
        case when ticket.responded_at >= ticket.received_at
            then date_diff('second', ticket.received_at, ticket.responded_at)
        end as respond_s,
        case when ticket.resolved_at >= ticket.received_at
            then date_diff('second', ticket.received_at, ticket.resolved_at)
        end as resolve_s
    from {{ ref('stg_hotline__ticket') }} as ticket
    left join {{ ref('dim_division') }} as village on village.division_code = ticket.village_code
    where ticket.received_at is not null
),

fingerprints as (
    {{ partition_fingerprints('tickets', 'date_day') }}
),

changed as (
    {{ changed_partitions('fingerprints', 'date_day') }}
),

daily as (
    select
        tickets.date_day,
        tickets.division_code,
        tickets.category,
        tickets.handling_department,
        count(*) as tickets,
        count(*) filter (where tickets.is_responded) as responded,
        count(*) filter (where tickets.status = '已办结') as resolved,
        count(*) filter (where tickets.satisfaction = '满意') as satisfied,
        count(*) filter (where tickets.satisfaction = '基本满意') as fairly_satisfied,
        count(*) filter (where tickets.satisfaction = '不满意') as dissatisfied,
        round(median(tickets.respond_s) / 60, 1) as median_respond_minutes,
        round(quantile_cont(tickets.respond_s, 0.9) / 60, 1) as p90_respond_minutes,
        round(median(tickets.resolve_s) / 3600, 2) as median_resolve_hours,
        round(quantile_cont(tickets.resolve_s, 0.9) / 3600, 2) as p90_resolve_hours,
        any_value(changed._fingerprint) as _fingerprint
    from tickets
    inner join changed on changed.date_day = tickets.date_day
    group by all
)

select
    daily.date_day,
    daily.division_code,
    division.town_code,
    division.town_name,
    daily.category,
    daily.handling_department,
    daily.tickets,
    daily.responded,
    daily.resolved,
    daily.tickets - daily.resolved as open_tickets,
    round(daily.resolved / daily.tickets, 4) as resolved_share,
    daily.satisfied,
    daily.fairly_satisfied,
    daily.dissatisfied,
    case when daily.satisfied + daily.fairly_satisfied + daily.dissatisfied > 0
        then round((daily.satisfied + daily.fairly_satisfied)
                   / (daily.satisfied + daily.fairly_satisfied + daily.dissatisfied), 4)
    end as satisfaction_rate,
    daily.median_respond_minutes,
    daily.p90_respond_minutes,
    daily.median_resolve_hours,
    daily.p90_resolve_hours,
    daily._fingerprint
from daily
left join {{ ref('dim_division') }} as division on division.division_code = daily.division_code
