{#- Schemas are named by layer (staging, intermediate, base, marts, snapshots, reference), not
    prefixed with the target schema: analysts read "base.base_people", not "main_base...". -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}

{#- A condition on DuckDB's catalogue views (duckdb_tables(), duckdb_columns()): the rows of
    ``relation`` (one without a database and schema is a temporary table, in temp.main). Read
    by run_query, it costs dbt a statement; the adapter's get_columns_in_relation builds a
    macro context of every macro first (about 25 ms of Python, holding the GIL). -#}
{% macro in_catalogue(relation) -%}
    database_name = '{{ relation.database or "temp" }}'
    and schema_name = '{{ relation.schema or "main" }}'
    and table_name = '{{ relation.identifier }}'
{%- endmacro %}

{#- An incremental model's check that the rows it built have the table's columns
    (on_schema_change: the marts fail, staging appends new columns), from one read of the
    catalogue. dbt's check describes both tables through the adapter; twice per model and
    build, that was a tenth of a second of Python per model. When both have the same columns
    of the same types in the same order, as in every build of an unchanged project, they are
    the columns to insert; otherwise dbt's own check decides. -#}
{% macro duckdb__process_schema_changes(on_schema_change, source_relation, target_relation) %}
    {%- if on_schema_change != 'ignore' -%}
        {%- set found = run_query(
            "select table_name = '" ~ source_relation.identifier ~ "' as built, column_name,"
            ~ " data_type from duckdb_columns() where (" ~ in_catalogue(source_relation)
            ~ ") or (" ~ in_catalogue(target_relation) ~ ") order by column_index") -%}
        {%- set built, existing = [], [] -%}
        {%- for row in found.rows -%}
            {%- do (built if row[0] else existing).append((row[1], row[2])) -%}
        {%- endfor -%}
        {%- if built and built == existing -%}
            {%- set columns = [] -%}
            {%- for name, data_type in built -%}
                {%- do columns.append(api.Column.create(name, data_type)) -%}
            {%- endfor -%}
            {{- return(columns) -}}
        {%- endif -%}
    {%- endif -%}
    {{- return(dbt.default__process_schema_changes(
        on_schema_change, source_relation, target_relation)) -}}
{% endmacro %}
