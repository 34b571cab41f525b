-- the department scorecard as published by the ingestion (one row per department and day)
{{ config(materialized=lake_file_materialization()) }}
{{ lake_file('lake_quality', 'scorecard', 'quality/scorecard.parquet') }}
