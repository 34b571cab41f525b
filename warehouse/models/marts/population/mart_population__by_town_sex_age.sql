{#- 户籍人口分乡镇、性别、五岁年龄组：状态正常的户籍人口 — registered residents (status 正常)
    per town, sex (GB/T 2261.1) and five-year age band, ages as of the newest register window. -#}

with register as (
    select * from {{ ref('base_people') }}
    where in_register and register_status = '正常'
),

as_of as (
    select max(_load_date) as as_of_date from {{ ref('stg_public_security__resident') }}
),

people as (
    select
        coalesce(register.town_code || '000', {{ county_division_code() }}) as division_code,
        coalesce(register.sex, '0') as sex,
        date_sub('year', register.birth_date, as_of.as_of_date) as age
    from register
    cross join as_of
),

banded as (
    select
        division_code,
        sex,
        case
            when age is null or age < 0 then null
            when age >= 85 then 85
            else age // 5 * 5
        end as age_band_start
    from people
),

counted as (
    select division_code, sex, age_band_start, count(*) as residents
    from banded
    group by all
)

select
    counted.division_code,
    division.town_code,
    division.town_name,
    counted.sex,
    sex.sex_name_zh,
    case
        when counted.age_band_start is null then '不详'
        when counted.age_band_start = 85 then '85+'
        else counted.age_band_start || '-' || (counted.age_band_start + 4)
    end as age_band,
    counted.age_band_start,
    case
        when counted.age_band_start is null then null
        when counted.age_band_start < 15 then '0-14'
        when counted.age_band_start < 60 then '15-59'
        else '60+'
    end as age_group,
    counted.residents,
    as_of.as_of_date
from counted
cross join as_of
left join {{ ref('dim_division') }} as division on division.division_code = counted.division_code
left join {{ ref('dim_sex') }} as sex on sex.sex_code = counted.sex
