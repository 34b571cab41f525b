{#- 一人一档：每个人（人员假名）一行——哪些部门、哪些数据集知道这个人，各有多少条记录，最早和最近何时出现 —
    the cross-department profile of each person (one row per person key): which departments
    and datasets know the person, how many current records each holds, first and last seen;
    with the register's masked identity and town. Departments are named as the ingestion
    recorded them for each system. -#}

with departments as (
    -- each system's department as the ingestion recorded it (its newest name)
    select
        system,
        arg_max(dept_code, window_start) as dept_code,
        arg_max(dept_name, window_start) as dept_name
    from {{ ref('stg_quality__rule_results') }}
    group by system
),

sightings as (
    -- per person_key and dataset (a dataset may hold several columns naming the same one)
    select
        sightings.person_key,
        sightings.source_dataset,
        sum(sightings.records) as records,
        min(sightings.first_seen_date) as first_seen_date,
        max(sightings.last_seen_date) as last_seen_date,
        any_value(coalesce(departments.dept_code, split_part(sightings.source_dataset, '.', 1)))
            as dept_code,
        any_value(coalesce(departments.dept_name, split_part(sightings.source_dataset, '.', 1)))
            as dept_name
    from {{ ref('int_person_sightings') }} as sightings
    left join departments on departments.system = split_part(sightings.source_dataset, '.', 1)
    group by sightings.person_key, sightings.source_dataset
),

profiles as (
    -- lists sorted after aggregating (cheaper than ordered aggregates)
    select
        person_key,
        count(distinct dept_code) as department_count,
        list_sort(list_distinct(list(dept_name))) as departments,
        count(*) as dataset_count,
        list_sort(list(source_dataset)) as datasets,
        map_from_entries(list_sort(list(struct_pack(k := source_dataset, v := records))))
            as records_by_dataset,
        sum(records) as records,
        min(first_seen_date) as first_seen_date,
        max(last_seen_date) as last_seen_date
    from sightings
    group by person_key
)

select
    profiles.person_key,
    people.id_number_masked,
    people.name_masked,
    people.sex,
    people.birth_date is not null as has_birth_date,
    people.town_code,
    people.town_name,
    people.in_register,
    people.register_status,
    people.is_household_head,
    profiles.department_count,
    profiles.departments,
    profiles.dataset_count,
    profiles.datasets,
    profiles.records_by_dataset,
    profiles.records,
    profiles.first_seen_date,
    profiles.last_seen_date
from profiles
inner join {{ ref('base_people') }} as people on people.person_key = profiles.person_key
