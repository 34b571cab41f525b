{#- The staging models (generated from the contracts by etl/warehouse.py) share these: each
    keeps the current state per key, built incrementally for every strategy. -#}

{#- The model's config: incremental delete+insert on its key; post-hooks note whose rows
    changed (people, entities: their staged key columns), record the windows read, and remove
    the keys whose newest version is a delete and the replaced rows. -#}
{% macro staging_config(system, dataset, key, people=[], entities=[]) -%}
    {%- set hooks = [] -%}
    {%- for kind, columns in [('people', people), ('entities', entities)] if columns -%}
        {%- do hooks.append("{{ note_touched('" ~ kind ~ "', " ~ (columns | tojson) ~ ") }}") -%}
    {%- endfor -%}
    {%- do hooks.append("{{ record_staged_windows('" ~ system ~ "', '" ~ dataset ~ "') }}") -%}
    {%- do hooks.append("delete from {{ this }} where _op in ('D', 'R')") -%}
    {{ config(
        materialized='incremental',
        unique_key=key,
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=hooks,
    ) }}
{%- endmacro %}

{#- The model's end, after its CTE new_rows (the rows of the windows read, staged): the rows
    staged before under the same key compete with the new ones and the newest version wins
    (``order``), so the result equals a full rebuild whatever order the windows arrived in.
    On an incremental build the staged rows a newer version replaces come out once more,
    flagged 'R' for this build, for the post-hooks to note whose rows changed (a record
    re-delivered under another person changes both) before they are removed. -#}
{% macro staged_versions(key, order) -%}
candidates as (
    select *, false as _before from new_rows
    {%- if is_incremental() %}
    union all by name
    select staged_before.*, true as _before
    from {{ this }} as staged_before
    where exists (
        select 1 from new_rows
        where {% for k in key %}new_rows.{{ k }} = staged_before.{{ k }}{% if not loop.last %} and {% endif %}{% endfor %}
    )
    {%- endif %}
),

ranked as (
    select
        *,
        row_number() over (partition by {{ key | join(', ') }} order by {{ order | join(', ') }}) as _rank
    from candidates
)

select * exclude (_before, _rank)
from ranked
where _rank = 1
{%- if is_incremental() %}
union all by name
select * exclude (_before, _rank) replace ('R' as _op, getvariable('countylake_build') as _staged_in)
from ranked
where _rank > 1 and _before
{%- endif %}
{%- endmacro %}
