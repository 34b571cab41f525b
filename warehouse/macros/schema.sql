{#- Schemas are named by layer (staging, intermediate, base, marts, snapshots, reference), not
    prefixed with the target schema: analysts read "base.base_people", not "main_base...". -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}

{#- A condition on DuckDB's catalogue views (duckdb_tables(), duckdb_columns()): the rows of
    ``relation``. Read by run_query, it costs dbt a statement; the adapter's
    get_columns_in_relation builds a macro context of every macro first (about 30 ms). -#}
{% macro in_catalogue(relation) -%}
    database_name = '{{ relation.database }}' and schema_name = '{{ relation.schema }}'
    and table_name = '{{ relation.identifier }}'
{%- endmacro %}
