-- Every variant row of a run with the value(s) of the ranked column(s), paired with the reference row
-- (role = $reference: `control` for swaps, `corrupted` for causal tracing) of the same prompt, seed and noise
-- draw (causal tracing may average several noise draws per prompt; `noise_draw`, 0 where a run has none).
-- Placeholders (labels: coalesce(v.attribute, '') and v.concept, or '' when the run lacks them), built by analysis/effects.py from quoted identifiers checked against the run's columns:
--   design: v.<column> for each design column the run has, NULL AS <column> for the others
--   pairs:  v.<column> AS v<i>, r.<column> AS r<i> for each statistic column
--   draw_v, draw_r: coalesce(v.noise_draw, 0), coalesce(r.noise_draw, 0), or 0 when the run has no such column
-- $results is the glob of the run's Parquet parts.
WITH rows AS (
    SELECT * FROM read_parquet($results, hive_partitioning = true, union_by_name = true)
)
SELECT
    v.variant,
    v.prompt_id,
    v.seed,
    {draw_v} AS noise_draw,
    {labels},
    {design},
    {pairs}
FROM rows v
LEFT JOIN rows r ON r.role = $reference AND r.prompt_id = v.prompt_id AND r.seed = v.seed AND {draw_r} = {draw_v}
WHERE v.role = 'variant'
ORDER BY v.variant, v.prompt_id, v.seed, noise_draw
