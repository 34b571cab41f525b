{#- Helpers of the thematic marts (models/marts). -#}

{#- The county's own 12-digit division code: where a fact's town is not known (no village, or
    a village outside the reference table), marts put it on the county. -#}
{% macro county_division_code() -%}
    '{{ var("county").code }}000000'
{%- endmacro %}

{#- An average rebuilt from partial totals: sum(total) / sum(count) over the groups of an
    aggregate computed in two steps (per employer or depositor first), rounded to 2 places. -#}
{% macro average_of_parts(total, count) -%}
    round(cast(sum({{ total }}) as double) / nullif(sum({{ count }}), 0), 2)
{%- endmacro %}

{#- The departments of the contracts (var departments: system, code, name) as a relation
    (system, dept_code, dept_name). -#}
{% macro departments() -%}
    select * from (values
        (cast(null as varchar), cast(null as varchar), cast(null as varchar))
    {%- for d in var('departments') %},
        ('{{ d.system }}', '{{ d.code | replace("'", "''") }}', '{{ d.name | replace("'", "''") }}')
    {%- endfor %}
    ) as departments(system, dept_code, dept_name)
    where system is not null
{%- endmacro %}

{#- Incremental marts over append-only facts, partitioned by a day (or a month).

    A partition is recomputed when the fingerprint of its input rows changed: the row count
    and the XOR of the rows' hashes, over the mart's input relation after its joins (so a
    person who moves town changes the fingerprint of every partition the person appears in);
    a mart whose only join is the person's town may fingerprint its facts before the join and
    add the partitions of the people who moved (partitions_of_moved_people), which skips
    joining every fact to the people's towns on every build.
    Any row that is new, re-delivered with other values or moved to another day changes the
    fingerprint of the partitions it touches, so a sequence of incremental builds gives the
    same mart as a full rebuild, whatever order the lake windows arrived in. Computing the
    fingerprints is one hash-aggregate over the input; the expensive part (joins to the
    dimensions, distinct counts, medians) runs for the changed partitions only.

    The fingerprint is stored on every row of its partition as a 32-hex md5 (column
    _fingerprint): a digest, never an identifier. The mart's input CTE, read by the
    fingerprints and again for the changed partitions, is declared `not materialized`: DuckDB
    would otherwise copy every input row first (and spill under the build's memory limit),
    where a second scan keeps only the changed partitions' rows. -#}

{% macro partition_fingerprints(relation, partition) -%}
    select
        {{ partition }},
        md5(count(*) || '/' || bit_xor(hash({{ relation }}))) as _fingerprint
    from {{ relation }}
    group by {{ partition }}
{%- endmacro %}

{#- The partitions to compute with their fingerprints: all of them on a first build or a full
    refresh, else those whose fingerprint is not the one stored in the mart, and those the
    query ``also`` names. -#}
{% macro changed_partitions(fingerprints, partition, also=none) -%}
    select fingerprints.{{ partition }}, fingerprints._fingerprint
    from {{ fingerprints }} as fingerprints
    {%- if is_incremental() %}
    where not exists (
        select 1
        from {{ this }} as built
        where built.{{ partition }} = fingerprints.{{ partition }}
          and built._fingerprint = fingerprints._fingerprint
    )
    {%- if also %}
       or fingerprints.{{ partition }} in ({{ also }})
    {%- endif %}
    {%- endif %}
{%- endmacro %}

{#- Monthly marts place a person's facts by the town the household register gave the person
    in that month, not by today's town: a closed month keeps its figures when a person moves
    later, and a move recomputes only the months from the move on. The months each version of
    the register history placed the person are base_people_history's town_from_month and
    town_to_month. -#}

{#- The partitions (months) of ``relation`` whose facts are placed anew because their people
    moved in this build (_meta.moved_people, macros/changes.sql): a mover's months from the
    move on, every month of a person new to the register. -#}
{% macro partitions_of_moved_people(relation, partition) -%}
    select distinct facts.{{ partition }}
    from {{ relation }} as facts
    inner join _meta.moved_people as moved on moved.key = facts.person_key
    where moved.since_month is null or facts.{{ partition }} >= moved.since_month
    union
    select {{ partition }} from {{ relation }}
    where exists (select 1 from _meta.moved_people where key = '*')
{%- endmacro %}

{#- The CTEs of a monthly mart over the person facts ``relation`` (with a person_key):
    ``fingerprints`` of the facts alone, the ``changed`` months (fingerprint differs or a
    person moved), and ``placed``: those months' facts with the division_code of the
    person's town in the month (the county's where the register does not know the person). -#}
{% macro facts_placed_by_town_of_month(relation, partition) -%}
fingerprints as (
    {{ partition_fingerprints(relation, partition) }}
),

changed as (
    {{ changed_partitions('fingerprints', partition,
                          also=partitions_of_moved_people(relation, partition)) }}
),

placed as (
    select
        facts.*,
        coalesce(town.town_code || '000', {{ county_division_code() }}) as division_code
    from {{ relation }} as facts
    inner join changed on changed.{{ partition }} = facts.{{ partition }}
    left join {{ ref('base_people_history') }} as town
        on town.person_key = facts.person_key
       and not town.is_deleted
       and (town.town_from_month is null or facts.{{ partition }} >= town.town_from_month)
       and (town.town_to_month is null or facts.{{ partition }} < town.town_to_month)
)
{%- endmacro %}

{#- Pre-hook of an incremental mart: delete the partitions whose input rows are all gone (a
    re-delivered row moved to another day), which delete+insert alone would keep. -#}
{% macro forget_vanished_partitions(partition, model, expression) -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ partition }} not in (
        select distinct {{ expression }}
        from {{ ref(model) }}
        where {{ expression }} is not null
    )
    {%- endif -%}
{%- endmacro %}

{#- Pre-hook of an incremental mart kept per person or entity: delete the touched keys that no
    row of ``model`` names any more. -#}
{% macro forget_vanished_keys(kind, column, model) -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ is_touched(kind, column) }}
      and {{ column }} not in (
          select {{ column }}
          from {{ ref(model) }}
          where {{ is_touched(kind, column) }} and {{ column }} is not null
      )
    {%- endif -%}
{%- endmacro %}

{#- The mart's config for an incremental mart partitioned by ``partition``; ``touched`` (people
    or entities) when the partition is a person or entity key, whose rows can only vanish when
    this build touched the key (macros/changes.sql), so only those keys are looked up. -#}
{% macro incremental_mart(partition, model, expression, touched=none) -%}
    {%- if touched -%}
    {%- set forget = "{{ forget_vanished_keys('" ~ touched ~ "', '" ~ partition ~ "', '" ~ model ~ "') }}" -%}
    {%- else -%}
    {%- set forget = "{{ forget_vanished_partitions('" ~ partition ~ "', '" ~ model ~ "', \"" ~ expression ~ "\") }}" -%}
    {%- endif -%}
    {{ config(
        materialized='incremental',
        unique_key=partition,
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook=[forget],
    ) }}
{%- endmacro %}
