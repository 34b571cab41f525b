{#- 分乡镇（街道）户籍人口：每个乡镇一行，户籍人口（状态正常）按性别和年龄组，另有户数和迁出、死亡登记数 —
    registered population per town (one row per town of the county, status 正常), by sex and
    broad age group, with households and the register's moved-out and deceased records. Ages
    are as of the newest register window (as_of_date). Read by the city exchange (key
    town_code). -#}

with register as (
    select * from {{ ref('base_people') }}
    where in_register
),

as_of as (
    select max(_load_date) as as_of_date from {{ ref('stg_public_security__resident') }}
),

people as (
    select
        register.town_code,
        register.register_status,
        register.sex,
        date_sub('year', register.birth_date, as_of.as_of_date) as age
    from register
    cross join as_of
),

counted as (
    select
        town_code,
        count(*) filter (where register_status = '正常') as residents,
        count(*) filter (where register_status = '正常' and sex = '1') as male,
        count(*) filter (where register_status = '正常' and sex = '2') as female,
        count(*) filter (where register_status = '正常' and age between 0 and 14) as aged_0_14,
        count(*) filter (where register_status = '正常' and age between 15 and 59) as aged_15_59,
        count(*) filter (where register_status = '正常' and age >= 60) as aged_60_plus,
        count(*) filter (where register_status = '正常' and age >= 65) as aged_65_plus,
        count(*) filter (where register_status = '正常' and (age is null or age < 0)) as age_unknown,
        count(*) filter (where register_status = '迁出') as moved_out,
        count(*) filter (where register_status = '死亡') as deceased,
        count(*) as register_records
    from people
    group by town_code
),

households as (
    select village.town_code, count(*) as households, sum(household.member_count) as household_members
    from {{ ref('stg_public_security__household') }} as household
    inner join {{ ref('dim_division') }} as village
        on village.division_code = household.village_code
    group by village.town_code
),

towns as (
    select * from {{ ref('dim_division') }}
    where division_level = 'town'
)

select
    towns.town_code,
    towns.town_name,
    towns.division_code,
    towns.town_type,
    coalesce(counted.residents, 0) as residents,
    coalesce(counted.male, 0) as male,
    coalesce(counted.female, 0) as female,
    coalesce(counted.aged_0_14, 0) as aged_0_14,
    coalesce(counted.aged_15_59, 0) as aged_15_59,
    coalesce(counted.aged_60_plus, 0) as aged_60_plus,
    coalesce(counted.aged_65_plus, 0) as aged_65_plus,
    coalesce(counted.age_unknown, 0) as age_unknown,
    case when counted.residents > 0
        then round(counted.aged_60_plus / counted.residents, 4)
    end as aged_60_plus_share,
    coalesce(households.households, 0) as households,
    coalesce(households.household_members, 0) as household_members,
    coalesce(counted.moved_out, 0) as moved_out,
    coalesce(counted.deceased, 0) as deceased,
    coalesce(counted.register_records, 0) as register_records,
    as_of.as_of_date
from towns
cross join as_of
left join counted on counted.town_code = towns.town_code
left join households on households.town_code = towns.town_code
