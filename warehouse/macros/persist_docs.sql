{#- The descriptions as DuckDB comments (persist_docs), written once per table, in one
    statement, after one read of the catalogue.

    dbt writes a model's table and column comments after every build of it: two column lookups
    through the adapter (each builds a macro context of every macro, about 25 ms of Python
    holding the GIL) and two statements per model. An incremental model built incrementally
    keeps the comments its first build wrote (the new file starts as a copy of the current
    one), and its descriptions cannot have changed since: a changed project makes the build a
    full refresh, which creates every table anew. So a table whose comment already is the
    model's description is left as it is; a new table (a first build, a full refresh, a table
    model) gets its comments. Documented columns the table lacks are warned about, as dbt does
    (validate_doc_columns). -#}
{% macro duckdb__persist_docs(relation, model, for_relation, for_columns) -%}
    {%- set on_table = for_relation and config.persist_relation_docs() and model.description -%}
    {%- set on_columns = for_columns and config.persist_column_docs() and model.columns -%}
    {%- if not execute or not (on_table or on_columns) -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set found = run_query(
        "select null as column_name, comment from duckdb_tables() where " ~ in_catalogue(relation)
        ~ " union all select column_name, comment from duckdb_columns() where "
        ~ in_catalogue(relation)) -%}
    {%- set columns, table_comment = [], [] -%}
    {%- for name, comment in found.rows -%}
        {%- do (columns if name is not none else table_comment).append(name or comment) -%}
    {%- endfor -%}
    {%- if on_table and table_comment == [model.description] -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set statements = [] -%}
    {%- if on_table -%}
        {%- do statements.append(alter_relation_comment(relation, model.description)) -%}
    {%- endif -%}
    {%- if on_columns -%}
        {%- for name, column in validate_doc_columns(relation, model.columns, columns).items() -%}
            {%- do statements.append(
                "comment on column " ~ relation ~ "."
                ~ (adapter.quote(name) if column['quote'] else name)
                ~ " is " ~ duckdb_escape_comment(column['description']) ~ ";") -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if statements -%}
        {%- do run_query(statements | join('\n')) -%}
    {%- endif -%}
{%- endmacro %}
