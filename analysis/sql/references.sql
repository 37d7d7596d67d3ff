-- Values of the ranked metric column(s) for the reference rows (control, target, corrupted) of a run.
SELECT role, count(*) AS n, {value_lists}
FROM read_parquet($results, hive_partitioning = true, union_by_name = true)
WHERE role <> 'variant' AND {not_null}
GROUP BY role
ORDER BY role
