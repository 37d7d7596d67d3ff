-- Per-variant values of the ranked metric column(s) over every (prompt, seed) of a run.
-- The value-lists placeholder becomes one `list(<column> ORDER BY prompt_id, seed) AS v<i>` per column the
-- statistic needs, and the not-null placeholder requires them all; both are built by analysis/rank.py from
-- quoted identifiers checked against the run's columns.
-- $results is the glob of the run's Parquet parts.
-- The design placeholder becomes `any_value(<column>) AS <column>` for each design column the run has
-- (site, kind, site_index, window_start, window_size, step_start, steps_patched, position) and
-- `NULL AS <column>` for the others.
SELECT
    variant,
    {design},
    count(*) AS n,
    list(prompt_id ORDER BY prompt_id, seed) AS clusters,
    {value_lists}
FROM read_parquet($results, hive_partitioning = true, union_by_name = true)
WHERE role = 'variant' AND {not_null}
GROUP BY variant
