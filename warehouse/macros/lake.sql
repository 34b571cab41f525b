{#- Reading the lake. Every landed dataset is a dbt source whose relation is
    read_parquet('<lake_root>/raw/<system>/<dataset>/**/*.parquet', hive_partitioning, union_by_name)
    (see models/staging/_sources.yml, generated from the contracts); staging models read only
    the windows they have not staged yet. -#}

{% macro lake_root() -%}
    {%- set root = var('lake_root') -%}
    {%- if not root -%}
        {{ exceptions.raise_compiler_error("var lake_root is empty: build through etl.warehouse or export COUNTYLAKE_LAKE") }}
    {%- endif -%}
    {{ return(root.rstrip('/')) }}
{%- endmacro %}

{#- on-run-start: the lake's published windows as this build sees them, one row per
    (system, dataset, 'YYYY-MM-DD/HHMM'), taken once so that every model and hook of the build
    agrees on them (a window landing meanwhile waits for the next build). The ingestion
    publishes a window by renaming its folder into place, so a window is seen whole or not at
    all; the folders of a window being swapped in (window=HHMM.incoming, .replaced) are not
    windows (etl.warehouse.WINDOW_FOLDER). etl.warehouse.build lists the lake for its plan
    anyway and hands what it saw to dbt as a CSV file (COUNTYLAKE_LAKE_WINDOWS_FILE); dbt
    run by hand lists the lake here. _meta.staged_windows records which of them each staging
    model has read. -#}
{% macro snapshot_lake_windows() -%}
    create schema if not exists _meta;
    create table if not exists _meta.staged_windows (
        model varchar, window_id varchar, build_id varchar
    );
    {%- set listed = env_var('COUNTYLAKE_LAKE_WINDOWS_FILE', '') %}
    {%- if listed %}
    create or replace table _meta.lake_windows as
    select * from read_csv('{{ listed }}', header = true,
        columns = {'system': 'varchar', 'dataset': 'varchar', 'window_id': 'varchar'});
    {%- else %}
    create or replace table _meta.lake_windows as
    select distinct
        parts.system,
        parts.dataset,
        parts.load_date || '/' || parts.window_ as window_id
    from (
        select regexp_extract(
            file,
            '/raw/([^/]+)/([^/]+)/load_date=([^/]+)/window=([^/]+)/[^/]+$',
            ['system', 'dataset', 'load_date', 'window_']
        ) as parts
        from glob('{{ lake_root() }}/raw/*/*/load_date=*/window=[0-9][0-9][0-9][0-9]/*.parquet')
    );
    {%- endif %}
{%- endmacro %}

{#- The window ids a staging model reads: every window of the lake on a first build or a
    full refresh, else those it has not staged yet. -#}
{% macro windows_to_stage(system, dataset) -%}
    {%- if not execute -%}{{ return([]) }}{%- endif -%}
    {%- set sql -%}
        select window_id from _meta.lake_windows
        where system = '{{ system }}' and dataset = '{{ dataset }}'
        {%- if is_incremental() %}
          and window_id not in (
              select window_id from _meta.staged_windows where model = '{{ this.identifier }}'
          )
        {%- endif %}
        order by window_id
    {%- endset -%}
    {{ return(run_query(sql).columns[0].values() | list) }}
{%- endmacro %}

{#- Post-hook of a staging model: the windows it read are staged (all of them again after a
    full refresh). -#}
{% macro record_staged_windows(system, dataset) -%}
    {%- if not is_incremental() -%}
    delete from _meta.staged_windows where model = '{{ this.identifier }}';
    {%- endif %}
    insert into _meta.staged_windows
    select '{{ this.identifier }}', window_id, getvariable('countylake_build')
    from _meta.lake_windows
    where system = '{{ system }}' and dataset = '{{ dataset }}'
      and window_id not in (
          select window_id from _meta.staged_windows where model = '{{ this.identifier }}'
      )
{%- endmacro %}

{#- The rows of the given windows of one landed dataset, with its partition columns load_date
    and "window". No window (nothing new, or nothing landed yet) reads as an empty relation
    typed from the contract, so a new contract never breaks the build before it lands. -#}
{% macro landed(system, dataset, windows) -%}
    {%- set relation = source(system, dataset) -%}
    {%- if execute and not windows -%}
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
        {#- the source's relation, narrowed to the windows' folders -#}
        {%- set folder = lake_root() ~ '/raw/' ~ system ~ '/' ~ dataset -%}
        select * replace (cast("window" as varchar) as "window")
        from read_parquet([
            {%- for w in windows -%}
            '{{ folder }}/load_date={{ w.split('/')[0] }}/window={{ w.split('/')[1] }}/*.parquet'
            {%- if not loop.last %}, {% endif -%}
            {%- endfor -%}
        ], hive_partitioning = true, union_by_name = true)
    {%- endif -%}
{%- endmacro %}

{#- How the models over a file rewritten in place (lake/quality, which each build publishes
    first) are stored. On a local lake they are views: a query reads the file as last
    published, so new quality results need no build (etl.warehouse.plan_build rebuilds the
    views only when a file appears, changes its columns or the data root moves). On an object
    store they are tables: a reader of the warehouse has not registered the lake's filesystem
    (etl.lake.register). -#}
{% macro lake_file_materialization() -%}
    {{ return('table' if '://' in var('lake_root') else 'view') }}
{%- endmacro %}

{#- One file the lake publishes whole (lake/quality/<name>.parquet, written by etl/quality.py),
    or an empty relation typed from its source columns while it does not exist yet. -#}
{% macro lake_file(source_name, table_name, file) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- set path = lake_root() ~ '/' ~ file -%}
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
