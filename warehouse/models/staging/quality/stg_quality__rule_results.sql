-- every rule's result per landed attempt, as published by the ingestion
{{ config(materialized=lake_file_materialization()) }}
{{ lake_file('lake_quality', 'rule_results', 'quality/rule_results.parquet') }}
