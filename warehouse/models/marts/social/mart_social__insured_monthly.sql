{#- 社会保险参保月统计：每个缴费年月、乡镇（参保人当月户籍）和险种的参保人数、缴费状态、参保单位和缴费基数 —
    social insurance per contribution month, town of the insured person's registered residence
    in that month and insurance type. Incremental: a month is recomputed when its contributions
    change or an insured person moves town in it or before it. -#}
{{ incremental_mart('contribution_month', 'stg_hrss__insured_person', 'contribution_month') }}

with insured as not materialized (
    select
        contribution_month,
        insurance_type,
        person_key,
        employer_credit_code,
        contribution_base,
        status
    from {{ ref('stg_hrss__insured_person') }}
    where contribution_month is not null
),

{{ facts_placed_by_town_of_month('insured', 'contribution_month') }},

per_employer as (
    -- per employer first, so that the employers are a plain count: a distinct aggregate
    -- beside the others makes DuckDB hold a copy of every contribution (and spill)
    select
        contribution_month,
        division_code,
        insurance_type,
        employer_credit_code,
        -- the staging key is (person, insurance type, month): one row per insured person
        count(*) as insured_persons,
        count(*) filter (where status = '参保缴费') as contributing,
        count(*) filter (where status = '暂停缴费') as suspended,
        count(*) filter (where status = '终止') as terminated,
        sum(contribution_base) as contribution_base_total,
        count(contribution_base) as contribution_bases
    from placed
    group by all
),

monthly as (
    select
        per_employer.contribution_month,
        per_employer.division_code,
        per_employer.insurance_type,
        cast(sum(per_employer.insured_persons) as bigint) as insured_persons,
        cast(sum(per_employer.contributing) as bigint) as contributing,
        cast(sum(per_employer.suspended) as bigint) as suspended,
        cast(sum(per_employer.terminated) as bigint) as terminated,
        count(per_employer.employer_credit_code) as employers,
        sum(per_employer.contribution_base_total) as contribution_base_total,
        {{ average_of_parts(
            'per_employer.contribution_base_total', 'per_employer.contribution_bases'
        ) }} as contribution_base_avg,
        any_value(changed._fingerprint) as _fingerprint
    from per_employer
    inner join changed on changed.contribution_month = per_employer.contribution_month
    group by all
)

select
    monthly.contribution_month,
    cast(try_strptime(monthly.contribution_month || '-01', '%Y-%m-%d') as date) as month_start,
    monthly.division_code,
    division.town_code,
    division.town_name,
    monthly.insurance_type,
    monthly.insured_persons,
    monthly.contributing,
    monthly.suspended,
    monthly.terminated,
    monthly.employers,
    monthly.contribution_base_total,
    monthly.contribution_base_avg,
    monthly._fingerprint
from monthly
left join {{ ref('dim_division') }} as division on division.division_code = monthly.division_code
