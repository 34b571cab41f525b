{#- 部门数据质量评分卡：每个部门每天的及时性、完整性、有效性、唯一性及综合得分，来自入湖校验 —
    the department data-quality scorecard per department and day (timeliness, completeness,
    validity, uniqueness, their mean), as the ingestion published it, for department heads and
    the weekly brief. A view, as the staging model under it is on a local lake: the
    results ingestion publishes show without a build (lake_file_materialization). -#}

{{ config(materialized='view') }}

with scorecard as (
    select * from {{ ref('stg_quality__scorecard') }}
)

select
    dept_code,
    dept_name,
    day as date_day,
    datasets,
    cast(rows_read as bigint) as rows_read,
    cast(rows_landed as bigint) as rows_landed,
    cast(rows_quarantined as bigint) as rows_quarantined,
    case when rows_read > 0 then round(rows_quarantined / rows_read, 6) end as quarantined_share,
    timeliness,
    completeness,
    validity,
    uniqueness,
    round((coalesce(timeliness, 0) + coalesce(completeness, 0) + coalesce(validity, 0)
           + coalesce(uniqueness, 0))
          / nullif((timeliness is not null)::int + (completeness is not null)::int
                   + (validity is not null)::int + (uniqueness is not null)::int, 0), 4)
        as overall_score,
    coalesce(len(failing_rules), 0) as failing_rule_count,
    failing_rules
from scorecard
