{#- The county's village-level units from its NBS code table (columns code12, name,
    town_code9, town_name); the path comes from the county profile as var villages_csv. -#}
{%- set csv = var('villages_csv') -%}
{%- if not csv -%}
    {{ exceptions.raise_compiler_error("var villages_csv is empty: build through etl.warehouse or export COUNTYLAKE_VILLAGES_CSV") }}
{%- endif -%}
{%- set county = var('county') -%}

select
    cast(code12 as varchar) as village_code,
    cast(name as varchar) as village_name,
    cast(town_code9 as varchar) as town_code,
    cast(town_name as varchar) as town_name,
    '{{ county.province }}{{ county.city }}{{ county.name }}' || town_name || name
        as village_full_name
from read_csv('{{ csv }}', header = true, all_varchar = true)
