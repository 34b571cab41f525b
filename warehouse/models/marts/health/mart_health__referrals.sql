{#- 双向转诊日统计：每日、乡镇（患者户籍）、方向（上转/下转）和转出转入层级的转诊量及其状态 —
    referrals up and down the levels of care per day, town of the patient's registered
    residence, direction and pair of levels, with their current status. Incremental: a day is
    recomputed when a referral of that day changes status or a patient moves town. -#}
{{ incremental_mart('date_day', 'stg_health__referral', 'cast(referred_at as date)') }}

with referrals as not materialized (
    select
        cast(referral.referred_at as date) as date_day,
        coalesce(person.town_code || '000', {{ county_division_code() }}) as division_code,
        referral.direction,
        referral.from_level,
        referral.to_level,
        referral.status,
        referral.referral_id,
        referral.patient_person_key
    from {{ ref('stg_health__referral') }} as referral
    left join {{ ref('base_people') }} as person
        on person.person_key = referral.patient_person_key
    where referral.referred_at is not null
),

fingerprints as (
    {{ partition_fingerprints('referrals', 'date_day') }}
),

changed as (
    {{ changed_partitions('fingerprints', 'date_day') }}
),

daily as (
    select
        referrals.date_day,
        referrals.division_code,
        referrals.direction,
        referrals.from_level,
        referrals.to_level,
        count(*) as referrals,
        count(*) filter (where referrals.status = '申请') as requested,
        count(*) filter (where referrals.status = '接收') as accepted,
        count(*) filter (where referrals.status = '完成') as completed,
        count(*) filter (where referrals.status = '取消') as cancelled,
        count(distinct referrals.patient_person_key) as patients,
        any_value(changed._fingerprint) as _fingerprint
    from referrals
    inner join changed on changed.date_day = referrals.date_day
    group by all
)

select
    daily.date_day,
    daily.division_code,
    division.town_code,
    division.town_name,
    daily.direction,
    case daily.direction when '上转' then 'up' when '下转' then 'down' end as direction_en,
    daily.from_level,
    from_level.care_level_name_zh as from_level_name,
    daily.to_level,
    to_level.care_level_name_zh as to_level_name,
    daily.referrals,
    daily.requested,
    daily.accepted,
    daily.completed,
    daily.cancelled,
    daily.patients,
    daily._fingerprint
from daily
left join {{ ref('dim_division') }} as division on division.division_code = daily.division_code
left join {{ ref('dim_care_level') }} as from_level on from_level.care_level = daily.from_level
left join {{ ref('dim_care_level') }} as to_level on to_level.care_level = daily.to_level
