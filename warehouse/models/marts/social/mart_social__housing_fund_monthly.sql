{#- 住房公积金缴存月统计：每个缴存年月和乡镇（缴存人当月户籍）的缴存笔数、人数、单位和金额 —
    housing provident fund deposits per deposit month and town of the depositor's registered
    residence in that month. Incremental: a month is recomputed when its deposits change or a
    depositor moves town in it or before it. -#}
{{ incremental_mart('deposit_month', 'stg_housing_fund__deposit', 'deposit_month') }}

with facts as not materialized (
    select deposit_month, serial_no, person_key, employer_credit_code, amount
    from {{ ref('stg_housing_fund__deposit') }}
    where deposit_month is not null
),

{{ facts_placed_by_town_of_month('facts', 'deposit_month') }},

per_depositor as (
    -- per depositor first, and the employers apart, so that both are plain counts: distinct
    -- aggregates beside the others make DuckDB hold a copy of every deposit (and spill)
    select
        deposit_month,
        division_code,
        person_key,
        count(*) as deposits,
        sum(amount) as amount_total,
        count(amount) as amounts
    from placed
    group by all
),

employers as (
    select deposit_month, division_code, count(distinct employer_credit_code) as employers
    from placed
    group by all
),

monthly as (
    select
        per_depositor.deposit_month,
        per_depositor.division_code,
        cast(sum(per_depositor.deposits) as bigint) as deposits,
        count(per_depositor.person_key) as depositors,
        any_value(employers.employers) as employers,
        sum(per_depositor.amount_total) as amount_total,
        {{ average_of_parts('per_depositor.amount_total', 'per_depositor.amounts') }} as amount_avg,
        any_value(changed._fingerprint) as _fingerprint
    from per_depositor
    inner join changed on changed.deposit_month = per_depositor.deposit_month
    inner join employers
        on employers.deposit_month = per_depositor.deposit_month
       and employers.division_code = per_depositor.division_code
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
