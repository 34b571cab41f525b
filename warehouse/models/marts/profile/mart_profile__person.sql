{#- 一人一档：每个人（人员假名）一行——哪些部门、哪些数据集知道这个人，各有多少条记录，最早和最近何时出现 —
    the cross-department profile of each person (one row per person key): which departments
    and datasets know the person, how many current records each holds, first and last seen;
    with the register's masked identity and town. Departments are named as the contracts
    name them (var departments). Incremental by person: a profile is recomputed when the
    person's sightings or register record change (the day's activity touches a few thousand
    people of hundreds of thousands); only the people this build touched are fingerprinted
    (_meta.touched_people). A department renamed in the contracts makes the next build a full
    refresh. -#}
{{ incremental_mart('person_key', 'int_person_sightings', 'person_key', touched='people') }}

with departments as (
    -- each system's department as its contract names it
    {{ departments() }}
),

sightings as (
    -- one row per person, dataset and ID column
    select
        sightings.person_key,
        sightings.source_dataset,
        sightings.source_column,
        sightings.records,
        sightings.first_seen_date,
        sightings.last_seen_date,
        coalesce(departments.dept_code, split_part(sightings.source_dataset, '.', 1)) as dept_code,
        coalesce(departments.dept_name, split_part(sightings.source_dataset, '.', 1)) as dept_name
    from {{ ref('int_person_sightings') }} as sightings
    left join departments on departments.system = split_part(sightings.source_dataset, '.', 1)
    {%- if is_incremental() %}
    -- only the people whose rows this build changed can have a new fingerprint
    where {{ is_touched('people', 'sightings.person_key') }}
    {%- endif %}
),

people as (
    select
        person_key,
        id_number_masked,
        name_masked,
        sex,
        birth_date is not null as has_birth_date,
        town_code,
        town_name,
        in_register,
        register_status,
        is_household_head
    from {{ ref('base_people') }}
    {%- if is_incremental() %}
    where {{ is_touched('people', 'person_key') }}
    {%- endif %}
),

sighting_prints as (
    select person_key, count(*) as n, bit_xor(hash(sightings)) as h
    from sightings
    group by person_key
),

fingerprints as (
    -- a person's profile changes with their sightings or their register record
    select
        people.person_key,
        md5(sighting_prints.n || '/' || sighting_prints.h || '/' || hash(people)) as _fingerprint
    from sighting_prints
    inner join people on people.person_key = sighting_prints.person_key
),

changed as (
    {{ changed_partitions('fingerprints', 'person_key') }}
),

per_dataset as (
    -- per person and dataset (a dataset may hold several columns naming the same person)
    select
        person_key,
        source_dataset,
        sum(records) as records,
        min(first_seen_date) as first_seen_date,
        max(last_seen_date) as last_seen_date,
        any_value(dept_code) as dept_code,
        any_value(dept_name) as dept_name
    from sightings
    where person_key in (select person_key from changed)
    group by person_key, source_dataset
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
    from per_dataset
    group by person_key
)

select
    profiles.person_key,
    people.id_number_masked,
    people.name_masked,
    people.sex,
    people.has_birth_date,
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
    profiles.last_seen_date,
    changed._fingerprint
from profiles
inner join people on people.person_key = profiles.person_key
inner join changed on changed.person_key = profiles.person_key
