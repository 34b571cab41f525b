{#- 远程会诊日统计：每日、乡镇（患者村居所在）、申请方和会诊方医疗层级的会诊量与完成时长 —
    telemedicine consultations per day, town (of the patient's village) and pair of levels of
    care. Incremental: a day is recomputed when its consultations change. -#}
{{ incremental_mart('date_day', 'stg_health__consultation', 'cast(requested_at as date)') }}

with consultations as not materialized (
    select
        cast(consultation.requested_at as date) as date_day,
        coalesce(village.town_code || '000', {{ county_division_code() }}) as division_code,
        consultation.requesting_level,
        consultation.consulting_level,
        consultation.consultation_id,
        consultation.patient_person_key,
        consultation.completed_at is not null as is_completed,
        case when consultation.completed_at >= consultation.requested_at
            then date_diff('second', consultation.requested_at, consultation.completed_at)
        end as turnaround_s
    from {{ ref('stg_health__consultation') }} as consultation
    left join {{ ref('dim_division') }} as village
        on village.division_code = consultation.village_code
    where consultation.requested_at is not null
),

fingerprints as (
    {{ partition_fingerprints('consultations', 'date_day') }}
),

changed as (
    {{ changed_partitions('fingerprints', 'date_day') }}
),

daily as (
    select
        consultations.date_day,
        consultations.division_code,
        consultations.requesting_level,
        consultations.consulting_level,
        count(*) as consultations,
        count(*) filter (where consultations.is_completed) as completed,
        count(distinct consultations.patient_person_key) as patients,
        round(median(consultations.turnaround_s) / 60, 1) as median_turnaround_minutes,
        round(quantile_cont(consultations.turnaround_s, 0.9) / 60, 1) as p90_turnaround_minutes,
        any_value(changed._fingerprint) as _fingerprint
    from consultations
    inner join changed on changed.date_day = consultations.date_day
    group by all
)

select
    daily.date_day,
    daily.division_code,
    division.town_code,
    division.town_name,
    daily.requesting_level,
    requesting.care_level_name_zh as requesting_level_name,
    daily.consulting_level,
    consulting.care_level_name_zh as consulting_level_name,
    daily.consulting_level - daily.requesting_level as level_gap,
    daily.consultations,
    daily.completed,
    daily.consultations - daily.completed as not_completed,
    daily.patients,
    daily.median_turnaround_minutes,
    daily.p90_turnaround_minutes,
    daily._fingerprint
from daily
left join {{ ref('dim_division') }} as division on division.division_code = daily.division_code
left join {{ ref('dim_care_level') }} as requesting
    on requesting.care_level = daily.requesting_level
left join {{ ref('dim_care_level') }} as consulting
    on consulting.care_level = daily.consulting_level
