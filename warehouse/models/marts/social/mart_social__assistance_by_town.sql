{#- 低保特困救助分乡镇统计：每个乡镇、救助类型和状态的救助户数、保障人数和月保障金额 —
    subsistence allowances and extreme-poverty support per town, assistance type and status
    (current roll). -#}

with assistance as (
    select
        coalesce(village.town_code || '000', {{ county_division_code() }}) as division_code,
        roll.assistance_type,
        roll.status,
        roll.person_key,
        roll.member_count,
        roll.monthly_amount
    from {{ ref('stg_civil_affairs__assistance') }} as roll
    left join {{ ref('dim_division') }} as village on village.division_code = roll.village_code
),

by_town as (
    select
        division_code,
        assistance_type,
        status,
        -- the roll's key is (household head, assistance type): one row per household
        count(*) as households,
        coalesce(sum(member_count), 0) as members,
        coalesce(sum(monthly_amount), 0) as monthly_amount_total
    from assistance
    group by all
)

select
    by_town.division_code,
    division.town_code,
    division.town_name,
    by_town.assistance_type,
    by_town.status,
    by_town.households,
    by_town.members,
    by_town.monthly_amount_total
from by_town
left join {{ ref('dim_division') }} as division on division.division_code = by_town.division_code
