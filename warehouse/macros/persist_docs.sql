{#- The descriptions as DuckDB comments (persist_docs), written once per table.

    dbt writes a model's table and column comments after every build of it: for each, two
    column lookups and two statements, about 0.1 s of dbt's Python per model, which holds the
    GIL. An incremental model built incrementally keeps the comments its first build wrote
    (the new file starts as a copy of the current one), and its descriptions
    cannot have changed since: a changed project makes the build a full refresh, which creates
    every table anew. So a table whose comment already is the model's description is left as
    it is; a new table (a first build, a full refresh, a table model) gets its comments. -#}
{% macro duckdb__persist_docs(relation, model, for_relation, for_columns) -%}
    {%- if execute and model.description and config.persist_relation_docs() -%}
        {%- set found = run_query(
            "select comment from duckdb_tables() where " ~ in_catalogue(relation)) -%}
        {%- if found.rows | length == 1 and found.rows[0][0] == model.description -%}
            {{- return(none) -}}
        {%- endif -%}
    {%- endif -%}
    {{- return(dbt.default__persist_docs(relation, model, for_relation, for_columns)) -}}
{%- endmacro %}
