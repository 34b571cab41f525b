{#- 社会保险参保月统计：每个缴费年月、乡镇（参保人户籍）和险种的参保人数、缴费状态、参保单位和缴费基数 —
    social insurance per contribution month, town of the insured person's registered residence
    and insurance type. Incremental: a month is recomputed when its contributions change or an
    insured person of the month moves town. -#}
{{ incremental_mart('contribution_month', 'stg_hrss__insured_person', 'contribution_month') }}

with insured as (
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

{{ changed_partitions_of_placed_facts('insured', 'contribution_month') }},

contributions as (
    select
        insured.contribution_month,
        coalesce(person.town_code || '000', {{ county_division_code() }}) as division_code,
        insured.insurance_type,
        insured.person_key,
        insured.employer_credit_code,
        insured.contribution_base,
        insured.status
    from insured
    inner join changed on changed.contribution_month = insured.contribution_month
    left join {{ ref('base_people') }} as person on person.person_key = insured.person_key
),

monthly as (
    select
        contributions.contribution_month,
        contributions.division_code,
        contributions.insurance_type,
        -- the staging key is (person, insurance type, month): one row per insured person
        count(*) as insured_persons,
        count(*) filter (where contributions.status = '参保缴费') as contributing,
        count(*) filter (where contributions.status = '暂停缴费') as suspended,
        count(*) filter (where contributions.status = '终止') as terminated,
        count(distinct contributions.employer_credit_code) as employers,
        sum(contributions.contribution_base) as contribution_base_total,
        round(avg(contributions.contribution_base), 2) as contribution_base_avg,
        any_value(changed._fingerprint) as _fingerprint
    from contributions
    inner join changed on changed.contribution_month = contributions.contribution_month
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
