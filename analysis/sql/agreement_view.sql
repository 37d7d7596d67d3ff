-- The `agreement` view: for two runs of different methods on the same prompts, per attribute and concept, how far
-- their rankings of the sites both ranked agree. One row per (run_a, run_b, attribute, concept).
-- Input `agreement_sites` (analysis/agreement.py): one row per common site with each run's strength on the
-- common prompts (the effect signed so that larger = stronger under the run's own rule), whether that effect is
-- distinguishable from 0 (`effect_a`, `effect_b`), `top_k` and `n_prompts`; the pooled group of an attribute has
-- concept ''.
--   kendall_tau    Kendall's tau-b over the sites, a site's strength taken as 0 where its effect is not
--                  distinguishable from 0 (the order of layers that do nothing is noise); ties count for neither
--                  order; NULL when a run orders no pair. `kendall_tau(a, b)` is scipy.stats.kendalltau, registered
--                  on the connection by `analysis.agreement.create_views`
--   top_a, top_b   each run's strongest sites with an effect (effect_a / effect_b), at most top_k, by label
--                  (cross_attn#8); ties broken by forward index
--   k              the larger of the two top sets (at most top_k); top_k_overlap = how many sites both hold;
--                  top_k_share = top_k_overlap / k (1: the same sites, 0: none in common)
CREATE VIEW agreement AS
WITH held AS (
    SELECT *, CASE WHEN effect_a THEN strength_a ELSE 0 END AS held_a,
              CASE WHEN effect_b THEN strength_b ELSE 0 END AS held_b
    FROM agreement_sites
),
tau AS (
    SELECT run_a, run_b, attribute, concept,
           kendall_tau(list(held_a ORDER BY site), list(held_b ORDER BY site)) AS kendall_tau
    FROM held
    GROUP BY run_a, run_b, attribute, concept
),
ranked AS (
    SELECT *,
           row_number() OVER (PARTITION BY run_a, run_b, attribute, concept
                              ORDER BY effect_a DESC, strength_a DESC, site_index, site) AS rank_a,
           row_number() OVER (PARTITION BY run_a, run_b, attribute, concept
                              ORDER BY effect_b DESC, strength_b DESC, site_index, site) AS rank_b
    FROM agreement_sites
),
tops AS (
    SELECT run_a, run_b, attribute, concept, any_value(method_a) AS method_a, any_value(method_b) AS method_b,
           any_value(n_prompts) AS n_prompts, any_value(top_k) AS top_k, count(*) AS n_sites,
           coalesce(list(label ORDER BY rank_a) FILTER (WHERE effect_a AND rank_a <= top_k), []) AS top_a,
           coalesce(list(label ORDER BY rank_b) FILTER (WHERE effect_b AND rank_b <= top_k), []) AS top_b
    FROM ranked
    GROUP BY run_a, run_b, attribute, concept
)
SELECT t.attribute, nullif(t.concept, '') AS concept, t.run_a, t.method_a, t.run_b, t.method_b, t.n_prompts, t.n_sites,
       k.kendall_tau,
       t.top_k, greatest(len(t.top_a), len(t.top_b)) AS k,
       len(list_intersect(t.top_a, t.top_b)) AS top_k_overlap,
       CASE WHEN greatest(len(t.top_a), len(t.top_b)) > 0
            THEN len(list_intersect(t.top_a, t.top_b)) / greatest(len(t.top_a), len(t.top_b)) END AS top_k_share,
       t.top_a, t.top_b
FROM tops t
JOIN tau k ON k.run_a = t.run_a AND k.run_b = t.run_b AND k.attribute = t.attribute AND k.concept = t.concept
ORDER BY t.attribute, t.concept, t.run_a, t.run_b
