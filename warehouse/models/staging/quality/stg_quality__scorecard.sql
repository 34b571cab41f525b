-- the department scorecard as published by the ingestion (one row per department and day)
{{ lake_file('lake_quality', 'scorecard', 'quality/scorecard.parquet') }}
