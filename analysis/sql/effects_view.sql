-- The `effects` view: one row per (variant row, metric), the metric paired with the reference row of the same
-- run, prompt and seed (`control` for swaps, `corrupted` for causal tracing): effect = value − reference. A value
-- measured during generation (attn_contrib) has no reference row: its effect is the value.
-- The metric-columns placeholder becomes the quoted list of the metric columns present in `results`.
CREATE VIEW effects AS
WITH long AS (
    UNPIVOT (
        SELECT run, method, role, variant, site, kind, site_index, window_start, window_size, step_start, position,
               attribute, concept, prompt_id, seed, noise_draw, {metric_columns}
        FROM results
    ) ON {metric_columns} INTO NAME metric VALUE value
)
SELECT v.run, v.method, v.attribute, v.concept, v.variant, v.site, v.kind, v.site_index, v.window_start,
       v.window_size, v.step_start, v.position, v.prompt_id, v.seed, v.noise_draw, v.metric, v.value::DOUBLE AS value,
       r.value::DOUBLE AS reference, r.role AS reference_role,
       CASE WHEN r.role IS NULL THEN v.value ELSE v.value - r.value END::DOUBLE AS effect
FROM long v
LEFT JOIN long r
  ON r.run = v.run AND r.prompt_id = v.prompt_id AND r.seed = v.seed AND r.metric = v.metric
 AND r.noise_draw IS NOT DISTINCT FROM v.noise_draw
 AND r.role = CASE WHEN v.method = 'causal_trace' THEN 'corrupted' ELSE 'control' END
WHERE v.role = 'variant' AND (r.role IS NOT NULL OR v.method = 'attn_contrib')
