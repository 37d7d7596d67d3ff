-- Every variant row of a run with the value(s) of the ranked column(s), paired with the reference row
-- (role = $reference: `control` for swaps, `corrupted` for causal tracing) of the same prompt and seed.
-- Placeholders (labels: coalesce(v.attribute, '') and v.concept, or '' when the run lacks them), built by analysis/effects.py from quoted identifiers checked against the run's columns:
--   design: v.<column> for each design column the run has, NULL AS <column> for the others
--   pairs:  v.<column> AS v<i>, r.<column> AS r<i> for each statistic column
--   same_draw: causal tracing's noise draw must match too (AND r.noise_draw IS NOT DISTINCT FROM v.noise_draw),
--              or nothing when the run predates the column
-- $results is the glob of the run's Parquet parts.
WITH rows AS (
    SELECT * FROM read_parquet($results, hive_partitioning = true, union_by_name = true)
)
SELECT
    v.variant,
    v.prompt_id,
    v.seed,
    {labels},
    {design},
    {pairs}
FROM rows v
LEFT JOIN rows r ON r.role = $reference AND r.prompt_id = v.prompt_id AND r.seed = v.seed {same_draw}
WHERE v.role = 'variant'
ORDER BY v.variant, v.prompt_id, v.seed
