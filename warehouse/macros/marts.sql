{#- Helpers of the thematic marts (models/marts). -#}

{#- The county's own 12-digit division code: where a fact's town is not known (no village, or
    a village outside the reference table), marts put it on the county. -#}
{% macro county_division_code() -%}
    '{{ var("county").code }}000000'
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
    joining every fact to the people library on every build.
    Any row that is new, re-delivered with other values or moved to another day changes the
    fingerprint of the partitions it touches, so a sequence of incremental builds gives the
    same mart as a full rebuild, whatever order the lake windows arrived in. Computing the
    fingerprints is one hash-aggregate over the input; the expensive part (joins to the
    dimensions, distinct counts, medians) runs for the changed partitions only.

    The fingerprint is stored on every row of its partition as a 32-hex md5 (column
    _fingerprint): a digest, never an identifier. -#}

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

{#- The partitions of ``relation`` holding facts of the people whose town changed in this build
    (macros/changes.sql): a mart that places facts by the person's town fingerprints its facts
    without the join to the people library, and recomputes these partitions besides. -#}
{% macro partitions_of_moved_people(relation, partition, person_key='person_key') -%}
    select distinct {{ partition }}
    from {{ relation }}
    where {{ person_key }} in (select key from _meta.moved_people)
       or exists (select 1 from _meta.moved_people where key = '*')
{%- endmacro %}

{#- The CTEs ``fingerprints`` and ``changed`` of a mart that places the facts of ``relation``
    by the person's town: the facts fingerprinted alone, and the moved people's partitions. -#}
{% macro changed_partitions_of_placed_facts(relation, partition) -%}
fingerprints as (
    {{ partition_fingerprints(relation, partition) }}
),

changed as (
    {{ changed_partitions('fingerprints', partition,
                          also=partitions_of_moved_people(relation, partition)) }}
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
