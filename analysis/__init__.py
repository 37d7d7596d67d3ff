"""Analysis: DuckDB SQL over a run's Parquet results, and the small Python that ranks and reports."""
