{#- 市场主体分乡镇分行业统计：登记在本县的主体按乡镇、国民经济行业门类、主体类型和登记状态计数 —
    registered entities per town, industry section (GB/T 4754), entity type and status, with
    their registered capital (current register). -#}

with entities as (
    select
        coalesce(village.town_code || '000', {{ county_division_code() }}) as division_code,
        coalesce(entity.industry_section, '-') as industry_section,
        entity.entity_type,
        entity.status,
        entity.registered_capital,
        entity.established_date
    from {{ ref('base_entities') }} as entity
    left join {{ ref('dim_division') }} as village on village.division_code = entity.village_code
    where entity.in_register
),

counted as (
    select
        division_code,
        industry_section,
        entity_type,
        status,
        count(*) as entities,
        coalesce(sum(registered_capital), 0) as registered_capital_total,
        min(established_date) as earliest_established,
        max(established_date) as latest_established
    from entities
    group by all
)

select
    counted.division_code,
    division.town_code,
    division.town_name,
    counted.industry_section,
    section.name_zh as industry_section_name,
    counted.entity_type,
    counted.status,
    counted.entities,
    counted.registered_capital_total,
    counted.earliest_established,
    counted.latest_established
from counted
left join {{ ref('dim_division') }} as division on division.division_code = counted.division_code
left join {{ ref('code_industry_section') }} as section
    on section.section_code = counted.industry_section
