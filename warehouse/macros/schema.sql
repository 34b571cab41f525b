{#- Schemas are named by layer (staging, intermediate, base, marts, snapshots, reference), not
    prefixed with the target schema: analysts read "base.base_people", not "main_base...". -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
