{#- 空间地理：县 -> 乡镇（街道）-> 村居. One row per unit at every level, keyed by its 12-digit
    statistical code (higher levels padded with zeros, as NBS does), so a column that may hold
    a village, a town or the county code (contract standard nbs_division) joins on one key.
    Towns come from the county profile (var towns), villages from its NBS table. -#}
{%- set county = var('county') -%}

with villages as (
    select * from {{ ref('stg_reference__villages') }}
),

profile_towns as (
    {%- for town in var('towns') %}
    select '{{ town.code }}' as town_code, '{{ town.name }}' as town_name
    {%- if not loop.last %} union all{% endif %}
    {%- else %}
    select cast(null as varchar) as town_code, cast(null as varchar) as town_name where false
    {%- endfor %}
),

towns as (
    select town_code, town_name from profile_towns
    union
    -- a town that only the village table names (a newer code table) still gets its row
    select distinct town_code, town_name from villages
    where town_code not in (select town_code from profile_towns)
),

units as (
    select
        '{{ county.code }}000000' as division_code,
        'county' as division_level,
        '{{ county.name }}' as division_name,
        cast(null as varchar) as parent_code,
        cast(null as varchar) as town_code,
        cast(null as varchar) as town_name,
        cast(null as varchar) as village_code,
        cast(null as varchar) as village_name
    union all
    select
        town_code || '000',
        'town',
        town_name,
        '{{ county.code }}000000',
        town_code,
        town_name,
        null,
        null
    from towns
    union all
    select
        village_code,
        'village',
        village_name,
        town_code || '000',
        town_code,
        town_name,
        village_code,
        village_name
    from villages
)

select
    division_code,
    division_level,
    case division_level when 'county' then 1 when 'town' then 2 else 3 end as level_number,
    division_name,
    '{{ county.province }}{{ county.city }}{{ county.name }}'
        || coalesce(town_name, '') || coalesce(village_name, '') as full_name,
    parent_code,
    '{{ county.code }}' as county_code,
    '{{ county.name }}' as county_name,
    town_code,
    town_name,
    case
        when town_code is null then null
        when substr(town_code, 7, 3) between '001' and '099' then '街道'
        when substr(town_code, 7, 3) between '100' and '199' then '镇'
        when substr(town_code, 7, 3) between '200' and '399' then '乡'
        when substr(town_code, 7, 3) between '400' and '599' then '政企合一'
        else '其他'
    end as town_type,
    village_code,
    village_name,
    case
        when village_code is null then null
        when substr(village_code, 10, 3) between '001' and '199' then '居民委员会'
        when substr(village_code, 10, 3) between '200' and '399' then '村民委员会'
        else '其他'
    end as village_type
from units
