"""What `ftbridge` and `lineage` share and nothing else: errors, settings, retry policies, the
foreign-error map. It imports no engine (Spark, Ray, DuckDB), so both can build on it."""
