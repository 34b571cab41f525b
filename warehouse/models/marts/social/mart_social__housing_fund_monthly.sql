{#- 住房公积金缴存月统计：每个缴存年月和乡镇（缴存人户籍）的缴存笔数、人数、单位和金额 —
    housing provident fund deposits per deposit month and town of the depositor's registered
    residence. Incremental: a month is recomputed when its deposits change or a depositor of the
    month moves town. -#}
{{ incremental_mart('deposit_month', 'stg_housing_fund__deposit', 'deposit_month') }}

with facts as (
    select deposit_month, serial_no, person_key, employer_credit_code, amount
    from {{ ref('stg_housing_fund__deposit') }}
    where deposit_month is not null
),

{{ changed_partitions_of_placed_facts('facts', 'deposit_month') }},

deposits as (
    select
        facts.deposit_month,
        coalesce(person.town_code || '000', {{ county_division_code() }}) as division_code,
        facts.serial_no,
        facts.person_key,
        facts.employer_credit_code,
        facts.amount
    from facts
    inner join changed on changed.deposit_month = facts.deposit_month
    left join {{ ref('base_people') }} as person on person.person_key = facts.person_key
),

monthly as (
    select
        deposits.deposit_month,
        deposits.division_code,
        count(*) as deposits,
        count(distinct deposits.person_key) as depositors,
        count(distinct deposits.employer_credit_code) as employers,
        sum(deposits.amount) as amount_total,
        round(avg(deposits.amount), 2) as amount_avg,
        any_value(changed._fingerprint) as _fingerprint
    from deposits
    inner join changed on changed.deposit_month = deposits.deposit_month
    group by all
)

select
    monthly.deposit_month,
    cast(try_strptime(monthly.deposit_month || '-01', '%Y-%m-%d') as date) as month_start,
    monthly.division_code,
    division.town_code,
    division.town_name,
    monthly.deposits,
    monthly.depositors,
    monthly.employers,
    monthly.amount_total,
    monthly.amount_avg,
    monthly._fingerprint
from monthly
left join {{ ref('dim_division') }} as division on division.division_code = monthly.division_code
