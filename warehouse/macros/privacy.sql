{#- Privacy by construction (STANDARDS.md, "Data classification and masking").

    Staging applies these to every column whose contract declares a mask or the GB 11643
    standard, so raw ID numbers, names, phones and addresses stop at the lake: no table of the
    warehouse holds them (the no_raw_identifiers test checks every model).

    pseudonym(): keyed HMAC-SHA256 of the normalised value, computed in SQL, vectorised:
        HMAC(K, m) = sha256((K xor opad) || sha256((K xor ipad) || m))
    The two padded keys are session variables set by the countylake_keys plugin from the
    environment; the SQL text only names them, so no compiled file or doc holds the key. A
    build without the pads fails loudly instead of writing null keys. -#}

{% macro hmac_pad(which) -%}
    coalesce(getvariable('countylake_hmac_{{ which }}'),
             error('countylake: HMAC key not configured (build through etl.warehouse)'))
{%- endmacro %}

{% macro pseudonym(column) -%}
    case when nullif(trim({{ column }}), '') is null then null else
        sha256({{ hmac_pad('opad') }}
               || unhex(sha256({{ hmac_pad('ipad') }} || encode(upper(trim({{ column }}))))))
    end
{%- endmacro %}

{#- Display masks: keep a few characters, star the rest; null stays null. -#}
{% macro _keep_ends(column, head, tail) -%}
    case
        when nullif({{ column }}, '') is null then null
        when length({{ column }}) <= {{ head + tail }} then repeat('*', length({{ column }}))
        else left({{ column }}, {{ head }})
             || repeat('*', length({{ column }}) - {{ head + tail }})
             || {% if tail > 0 %}right({{ column }}, {{ tail }}){% else %}''{% endif %}
    end
{%- endmacro %}

{#- name keeps the surname: 张** -#}
{% macro mask_name(column) -%}
    case when nullif(trim({{ column }}), '') is null then null
         else left(trim({{ column }}), 1) || repeat('*', greatest(length(trim({{ column }})) - 1, 1))
    end
{%- endmacro %}

{#- ID number keeps the first 6 (issuing division) and the last 4 -#}
{% macro mask_id_number(column) %}{{ _keep_ends(column, 6, 4) }}{% endmacro %}

{#- mobile keeps 3 + 4: 180****1999 -#}
{% macro mask_mobile(column) %}{{ _keep_ends(column, 3, 4) }}{% endmacro %}

{#- landline keeps 4 + 2 -#}
{% macro mask_landline(column) %}{{ _keep_ends(column, 4, 2) }}{% endmacro %}

{#- bank card / account keeps 4 + 4 -#}
{% macro mask_bank_card(column) %}{{ _keep_ends(column, 4, 4) }}{% endmacro %}

{#- address truncated to village level: the reference name of the row's village when it has
    one, else the text up to the first village-level word; nothing finer ever passes. -#}
{% macro mask_address(column, village_full_name='null') -%}
    case when nullif(trim({{ column }}), '') is null then null
         else coalesce({{ village_full_name }},
                       nullif(regexp_extract({{ column }}, '^(.*?(村委会|居委会|社区|村))', 1), ''))
    end
{%- endmacro %}
