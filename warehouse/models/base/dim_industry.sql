{#- 行业维 GB/T 4754-2017 at division level: every two-digit division with its section. Codes
    such as "2662" (class), "C2662" or "26" join on industry_division. -#}
with sections as (
    select * from {{ ref('code_industry_section') }}
),

divisions as (
    select
        lpad(cast(d.range as varchar), 2, '0') as industry_division,
        s.section_code,
        s.name_zh as section_name_zh,
        s.name_en as section_name_en
    from sections as s,
        range(cast(s.division_from as integer), cast(s.division_to as integer) + 1) as d
)

select * from divisions
