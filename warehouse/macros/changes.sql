{#- What changed in this build, for the models downstream of staging to recompute only that.

    Staging models note, in post-hooks, the keys of the people (person_key columns) and
    entities (credit codes) whose rows this build wrote, replaced or deleted; '*' stands for
    "every key" when a staging model was built whole (a first build or a full refresh).
    The sightings, the libraries and the profiles delete those keys and compute them again,
    so an incremental build gives what a full rebuild gives. The tables are emptied when a
    build starts (on-run-start), so they only ever hold this build's keys. -#}

{% macro reset_touched() -%}
    create schema if not exists _meta;
    create or replace table _meta.touched_people (key varchar);
    create or replace table _meta.touched_entities (key varchar);
    create or replace table _meta.towns_before (person_key varchar, town_code varchar);
    create or replace table _meta.moved_people (key varchar, since_month varchar);
{%- endmacro %}

{#- The people whose town changed in this build ('*': maybe every person), with the month
    from which their placement changed (since_month, 'YYYY-MM'; null: every month), for the
    marts that place facts by the town of the month (facts_placed_by_town_of_month,
    macros/marts.sql): base_people keeps the touched people's towns before it recomputes them
    (pre-hook) and compares after (post-hook). A mover's new town applies from the month of the
    register's update (base_people_history.town_from_month is never earlier); a person new to
    the register (no town before) is placed by it in every month. -#}
{% macro keep_towns_before() -%}
    {%- if is_incremental() -%}
    insert into _meta.towns_before
    select person_key, town_code from {{ this }} where {{ is_touched('people', 'person_key') }}
    {%- endif -%}
{%- endmacro %}

{% macro note_moved_people() -%}
    insert into _meta.moved_people
    {%- if not is_incremental() %}
    select '*', null
    {%- else %}
    select
        coalesce(before.person_key, now.person_key),
        case
            when before.town_code is not null
                then strftime(now.register_updated_at, '%Y-%m')
        end
    from _meta.towns_before as before
    full join (
        select person_key, town_code, register_updated_at
        from {{ this }}
        where {{ is_touched('people', 'person_key') }}
    ) as now on now.person_key = before.person_key
    where before.town_code is distinct from now.town_code
    {%- endif %}
{%- endmacro %}

{#- Post-hook of a staging model (before its replaced and deleted rows are removed): the
    keys in ``columns`` of every row this build wrote, or '*' when the model was built whole. -#}
{% macro note_touched(kind, columns) -%}
    insert into _meta.touched_{{ kind }}
    {%- if not is_incremental() %}
    select '*'
    {%- else %}
    {%- set staged_before -%}
        exists (select 1 from _meta.staged_windows where model = '{{ this.identifier }}')
    {%- endset %}
    -- a model with no window staged before this build (its first) was built whole
    select '*' where not {{ staged_before }}
    {%- for column in columns %}
    union
    select {{ column }}
    from {{ this }}
    where {{ staged_before }}
      and _staged_in is not distinct from getvariable('countylake_build')
      and {{ column }} is not null
    {%- endfor %}
    {%- endif %}
{%- endmacro %}

{#- A condition: the key in ``column`` changed in this build. dbt renders a node just before
    it runs, after the staging hooks upstream noted their keys, so the condition is `true`
    when every key changed and a plain semi-join otherwise: DuckDB pushes a semi-join into the
    scan of a large table, where `in (...) or exists ('*')` made it read every row. -#}
{% macro is_touched(kind, column) -%}
    {%- if execute and every_key_touched(kind) -%}
    true
    {%- else -%}
    {{ column }} in (select key from _meta.touched_{{ kind }})
    {%- endif -%}
{%- endmacro %}

{% macro every_key_touched(kind) -%}
    {%- set found = run_query(
        "select count(*) from _meta.touched_" ~ kind ~ " where key = '*'"
    ) -%}
    {{- return(found.columns[0].values()[0] > 0) -}}
{%- endmacro %}

{#- Pre-hook of a model kept per person or entity: drop the keys this build recomputes
    (a key whose rows are all gone stays dropped). -#}
{% macro forget_touched(kind, column) -%}
    {%- if is_incremental() -%}
    delete from {{ this }} where {{ is_touched(kind, column) }}
    {%- endif -%}
{%- endmacro %}
