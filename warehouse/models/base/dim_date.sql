{#- 日期维：one row per day between vars date_dim_start and date_dim_end (birth dates of the
    oldest residents to the planning horizon). Official holidays are published yearly by the
    State Council and are not derived here. -#}
{%- set weekdays = ['星期一', '星期二', '星期三', '星期四', '星期五', '星期六', '星期日'] -%}

with days as (
    select cast(range as date) as date_day
    from range(date '{{ var("date_dim_start") }}', date '{{ var("date_dim_end") }}' + interval 1 day, interval 1 day)
)

select
    date_day,
    cast(strftime(date_day, '%Y%m%d') as integer) as date_key,
    year(date_day) as year,
    quarter(date_day) as quarter,
    month(date_day) as month,
    day(date_day) as day_of_month,
    dayofyear(date_day) as day_of_year,
    isodow(date_day) as day_of_week,
    {{ weekdays }}[isodow(date_day)] as day_of_week_zh,
    isodow(date_day) >= 6 as is_weekend,
    weekofyear(date_day) as iso_week,
    strftime(date_day, '%Y-%m') as year_month,
    month(date_day) || '月' as month_zh,
    cast(date_trunc('month', date_day) as date) as first_day_of_month,
    cast(last_day(date_day) as date) as last_day_of_month
from days
