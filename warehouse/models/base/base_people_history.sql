-- 人口库历史 (SCD2): the register's village, masked address and status per version

{#- Incremental by person: the snapshot adds or closes versions only for people whose register
    rows this build changed or deleted, all of them touched (macros/changes.sql), so a build
    replaces those people's versions instead of rewriting 370,000 people's. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ forget_touched('people', 'person_key') }}",
) }}

with versions as (
    select
        history.person_key,
        history.village_code,
        divisions.town_code,
        history.address_masked,
        history.status,
        history.dbt_is_deleted = 'True' as is_deleted,
        history.updated_at as source_updated_at,
        history.dbt_valid_from as valid_from,
        history.dbt_valid_to as valid_to,
        history.dbt_valid_to is null as is_current,
        history.dbt_scd_id as version_id
    from {{ ref('snap_people_register') }} as history
    left join {{ ref('dim_division') }} as divisions
        on divisions.division_code = history.village_code
    {%- if is_incremental() %}
    where {{ is_touched('people', 'history.person_key') }}
    {%- endif %}
),

-- The months ('YYYY-MM') in which each version placed the person, for marts that count a
-- month's facts in the town of that month: a version applies from the month of its source
-- update (never before an earlier version's month) until the next version's; the first
-- version also covers the months before it, since the history starts with the first build.
-- Deletions place nobody: a person removed from the register keeps the town of the months
-- they were in it.
updated_months as (
    select
        version_id,
        person_key,
        valid_from,
        case
            when row_number() over (partition by person_key order by valid_from) > 1
                then strftime(source_updated_at, '%Y-%m')
        end as updated_month
    from versions
    where not is_deleted
),

from_months as (
    select
        version_id,
        person_key,
        valid_from,
        max(updated_month) over (partition by person_key order by valid_from) as town_from_month
    from updated_months
),

town_months as (
    select
        version_id,
        town_from_month,
        lead(town_from_month) over (partition by person_key order by valid_from) as town_to_month
    from from_months
)

select
    versions.*,
    town_months.town_from_month,
    town_months.town_to_month
from versions
left join town_months on town_months.version_id = versions.version_id
