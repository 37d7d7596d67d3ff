"""Results: the result row's schema (`schema`), the provenance every row records (`provenance`), and the
run directory that stores rows as Hive-partitioned Parquet (`store`)."""
