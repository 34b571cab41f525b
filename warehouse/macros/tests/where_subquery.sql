{#- A test's `where` (dbt's get_where_subquery, overridden): the `where` that keeps a test to
    the rows of this build (`_staged_in ... getvariable('countylake_build')`) or to the keys it
    recomputed (`_meta.touched_*`) is dropped when every row is tested (`countylake warehouse
    test`: var every_row), and so is the same filter inside `no_raw_identifiers`. A build
    tests only what it wrote, so a test added or tightened since never saw the older rows.
    Any other `where` stays. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where and var('every_row', false) and build_scoped(where) -%}
        {%- set where = '' -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{% macro build_scoped(where) -%}
    {{- return('countylake_build' in where or '_meta.touched_' in where) -}}
{%- endmacro %}
