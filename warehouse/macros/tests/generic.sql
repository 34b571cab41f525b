{#- Generic tests of the project (no dbt packages: the build runs offline). -#}

{#- The grain: the columns together identify a row, so none of them is null and no combination
    repeats. One node for what unique and not_null per column would check in 1 + N: dbt pays
    about 50 ms of Python per node, whatever the rows. -#}
{% test grain(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by all
having count(*) > 1 or {{ columns | join(' is null or ') }} is null
{% endtest %}

{#- Columns that must hold a value: the null cells of several columns in one node (a row per
    null cell, named by its column). -#}
{% test not_null_columns(model, columns) %}
{%- for column in columns %}
select '{{ column }}' as column_name from {{ model }} where {{ column }} is null
{%- if not loop.last %}
union all
{%- endif %}
{%- endfor %}
{% endtest %}

{#- Known codes: the values each column may take (``values``: column -> list) and the table
    each column's codes must exist in (``references``: column -> {to: model or seed name,
    field}), every column in one node: a row per unknown value, named by its column. What
    accepted_values and relationships per column would check in one node each. -#}
{% test known_codes(model, values={}, references={}) %}
{%- set checks = [] -%}
{%- for column, allowed in values.items() -%}
    {%- set check -%}
select '{{ column }}' as column_name, cast({{ column }} as varchar) as value
from checked
where {{ column }} is not null
  and cast({{ column }} as varchar) not in (
      {%- for v in allowed %}'{{ v | string | replace("'", "''") }}'{% if not loop.last %}, {% endif %}{% endfor -%}
  )
    {%- endset -%}
    {%- do checks.append(check) -%}
{%- endfor -%}
{%- for column, target in references.items() -%}
    {%- set check -%}
select '{{ column }}' as column_name, cast(checked.{{ column }} as varchar) as value
from checked
where checked.{{ column }} is not null
  and not exists (
      select 1 from {{ ref(target.to) }} as parent
      where parent.{{ target.field }} = checked.{{ column }}
  )
    {%- endset -%}
    {%- do checks.append(check) -%}
{%- endfor -%}
with checked as (select * from {{ model }})
{{ checks | join('\nunion all\n') if checks else 'select null as column_name, null as value from checked where false' }}
{% endtest %}

{#- SCD2: every key has exactly one current version (dbt_valid_to is null). -#}
{% test one_current_row(model, column_name, valid_to='dbt_valid_to') %}
select {{ column_name }}, count(*) filter (where {{ valid_to }} is null) as current_rows
from {{ model }}
group by all
having count(*) filter (where {{ valid_to }} is null) <> 1
{% endtest %}

{#- Privacy: no value of any text column looks like a raw 18-character citizen ID number
    (GB 11643: division, birth date 18xx-20xx, sequence, check) or an 11-digit mobile number.
    A hex digest or token (a 64-hex pseudonym, a 32-hex snapshot version id or mart
    fingerprint, a 16-hex ingestion attempt id or key id) can contain digit runs by chance and is
    skipped: it is by construction not an identifier. A number counts only when it stands alone,
    not inside a longer run of digits or letters (a digest inside a list or JSON text). -#}
{% test no_raw_identifiers(model, touched=none, key=none) %}
{%- set id_pattern = '(^|[^0-9A-Za-z])[1-9][0-9]{5}(18|19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]([^0-9A-Za-z]|$)' -%}
{%- set mobile_pattern = '(^|[^0-9A-Za-z])1[3-9][0-9]{9}([^0-9A-Za-z]|$)' -%}
{#- the model's columns and types from DuckDB's catalogue (macros/schema.sql) -#}
{%- set columns = [] -%}
{%- if execute -%}
    {%- set found = run_query("select column_name, data_type from duckdb_columns() where "
                              ~ in_catalogue(model) ~ " order by column_index") -%}
    {%- for row in found.rows -%}
        {%- do columns.append({'name': row[0], 'dtype': row[1]}) -%}
    {%- endfor -%}
{%- endif -%}
{%- set texts = [] -%}
{#- A table whose rows carry the build that wrote them (_staged_in) is checked on this build's
    rows, and a table kept per person or entity (``touched``: people or entities, ``key``: its
    key column; see macros/changes.sql) on the keys this build recomputed: earlier rows were
    checked by their build and never change; every row when every row is tested (var
    every_row, macros/tests/where_subquery.sql). -#}
{%- set every_row = var('every_row', false) -%}
{%- set this_build_only = not every_row and columns | selectattr('name', 'equalto', '_staged_in') | list | length > 0 -%}
{%- for column in columns -%}
    {%- if column.dtype.upper().startswith('VARCHAR') or column.dtype.upper().endswith('[]') -%}
        {%- do texts.append(column.name) -%}
    {%- endif -%}
{%- endfor %}
{%- if texts %}
with checked as (
    select * from {{ model }}
    {%- if this_build_only %}
    where _staged_in is not distinct from getvariable('countylake_build')
    {%- elif touched and not every_row %}
    where {{ is_touched(touched, adapter.quote(key)) }}
    {%- endif %}
),

cells as (
    -- one row per non-null text cell
    unpivot (
        select
        {%- for name in texts %}
            cast({{ adapter.quote(name) }} as varchar) as {{ adapter.quote(name) }}
            {%- if not loop.last %},{% endif %}
        {%- endfor %}
        from checked
    ) on columns(*) into name column_name value value
)
select column_name, value
from cells
where value is not null
  and not regexp_full_match(value, '[0-9a-f]{16}|[0-9a-f]{32}|[0-9a-f]{64}')
  and (regexp_matches(value, '{{ id_pattern }}') or regexp_matches(value, '{{ mobile_pattern }}'))
{%- else %}
select null as column_name, null as value where false
{%- endif %}
{% endtest %}
