{#- Reading the lake. Every landed dataset is a dbt source whose relation is
    read_parquet('<lake_root>/raw/<system>/<dataset>/**/*.parquet', hive_partitioning, union_by_name)
    (see models/staging/_sources.yml, generated from the contracts). -#}

{% macro lake_glob(system, dataset) -%}
    {%- set root = var('lake_root') -%}
    {%- if not root -%}
        {{ exceptions.raise_compiler_error("var lake_root is empty: build through etl.warehouse or export COUNTYLAKE_LAKE") }}
    {%- endif -%}
    {{ root.rstrip('/') }}/raw/{{ system }}/{{ dataset }}/**/*.parquet
{%- endmacro %}

{#- The rows of one landed dataset, with its partition columns load_date and "window".
    A dataset with no landed file yet reads as an empty relation typed from the contract, so a
    new contract never breaks the build before its first window lands.
    skip_windows: 'YYYY-MM-DD/HHMM' ids already staged (incremental models); DuckDB prunes
    those partitions without opening their files. -#}
{% macro landed(system, dataset, skip_windows=none) -%}
    {%- set relation = source(system, dataset) -%}
    {%- if execute and not lake_has_files(system, dataset) -%}
        {%- set node = graph.sources['source.' ~ project_name ~ '.' ~ system ~ '.' ~ dataset] -%}
        select
        {%- for name, column in node.columns.items() %}
            cast(null as {{ column.data_type }}) as {{ adapter.quote(name) }},
        {%- endfor %}
            cast(null as varchar) as _op,
            cast(null as varchar) as _origin,
            cast(null as date) as load_date,
            cast(null as varchar) as "window"
        where false
    {%- else -%}
        select * replace (cast("window" as varchar) as "window")
        from {{ relation }}
        {%- if skip_windows %}
        where strftime(load_date, '%Y-%m-%d') || '/' || cast("window" as varchar) not in (
            {%- for w in skip_windows %}'{{ w }}'{% if not loop.last %}, {% endif %}{% endfor -%}
        )
        {%- endif %}
    {%- endif -%}
{%- endmacro %}

{% macro lake_has_files(system, dataset) -%}
    {%- set found = run_query("select count(*) from glob('" ~ lake_glob(system, dataset) ~ "')") -%}
    {{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}

{#- Window ids ('YYYY-MM-DD/HHMM') already in an incremental staging table. -#}
{% macro staged_windows(relation) -%}
    {%- if not execute -%}{{ return([]) }}{%- endif -%}
    {%- set result = run_query(
        "select distinct strftime(_load_date, '%Y-%m-%d') || '/' || _window as w from "
        ~ relation ~ " order by w") -%}
    {{ return(result.columns[0].values() | list) }}
{%- endmacro %}

{#- One file the lake publishes whole (lake/quality/<name>.parquet, written by etl/quality.py),
    or an empty relation typed from its source columns while it does not exist yet. -#}
{% macro lake_file(source_name, table_name, file) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- set path = var('lake_root').rstrip('/') ~ '/' ~ file -%}
    {%- set found = execute and (run_query("select count(*) from glob('" ~ path ~ "')").columns[0].values()[0] > 0) -%}
    {%- if execute and not found -%}
        {%- set node = graph.sources['source.' ~ project_name ~ '.' ~ source_name ~ '.' ~ table_name] -%}
        select
        {%- for name, column in node.columns.items() %}
            cast(null as {{ column.data_type }}) as {{ adapter.quote(name) }}{% if not loop.last %},{% endif %}
        {%- endfor %}
        where false
    {%- else -%}
        select * from {{ relation }}
    {%- endif -%}
{%- endmacro %}
