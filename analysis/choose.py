"""Which ranked variants become candidates: the decisions an edit will act on.

A ranking orders every variant; a candidate set is a claim ("these layers hold the attribute"), so a
variant enters it only when the evidence carries the claim:

* **distinguishable from 0**: its effect's interval (over prompts) excludes 0 on the rule's side, at the
  level Holm's correction over the group's variants asks for (`analysis.intervals`: the best of 16 noisy
  layers is not a finding). An effect of 0, or one within the noise, is never a candidate; with one
  prompt there is no interval, so nothing is selected from one prompt.
* **the paper's set size** for "top" rules (`Rule.set_size`: P2's best window, P3's top 3 layers on
  SDXL and 1 on IF/SD3), less any of those whose interval includes 0.
* **causal tracing** (P1): every state above a threshold chosen on held-out prompts
  (`analysis.threshold`), the threshold always > 0 in the direction of a restore, and the state's own
  interval excluding 0 — and only when the corruption worked. If the corrupted run does not lose the
  attribute (its statistic lies within the interval of the clean run's, is no worse, or is worse by
  less than `MIN_LOSS` of the clean statistic: a probe reading 0.99999 instead of 1.0 has not lost the
  colour), restoring a state has nothing to bring back; ranking the states would rank noise, so the
  group is reported as "corruption ineffective" and yields no candidates.

Every group leaves with a `status`: "selected", "nothing distinguishable from 0", "one prompt",
"constant metric" or "corruption ineffective".
* **a constant metric** ranks nothing: an attribute whose metric is one number on every row (CLIP with
  random weights reads 0 everywhere) is refused with one line naming the metric and the metrics that do
  vary; a concept group that is constant is reported as such, without candidates.
"""

from __future__ import annotations

from dataclasses import replace

import duckdb
import numpy as np

from analysis.bootstrap import aggregate, cluster_bootstrap
from analysis.effects import N_KEY, GroupData, GroupRanking, RankedVariant
from analysis.intervals import has_interval
from analysis.runs import AnalysisError, Run
from analysis.selection import Rule

CONSTANT = "constant metric"
INEFFECTIVE = "corruption ineffective"
SELECTED = "selected"
NOTHING = "nothing distinguishable from 0"
ONE_PROMPT = "one prompt"
MIN_LOSS = 0.1  # a working corruption lowers the clean statistic by at least this share of its magnitude


def distinguishable(v: RankedVariant, sign: int) -> bool:
    """The variant's effect is distinguishable from 0 on the side the rule calls stronger: its Holm-adjusted
    bootstrap p-value over the group is below α (`RankedVariant.distinct`) and its interval excludes 0."""
    interval = v.strength_interval(sign)
    return v.distinct and interval is not None and interval[0] > 0


def _mark(group: GroupRanking, chosen: set[str]) -> None:
    group.variants = [replace(v, selected=v.variant in chosen) for v in group.variants]


def select_top(group: GroupRanking) -> GroupRanking:
    """The paper's top `set_size` variants whose intervals exclude 0."""
    k, sign = group.rule.set_size, group.rule.sign
    top = group.variants[:k]
    chosen = {v.variant for v in top if distinguishable(v, sign)}
    _mark(group, chosen)
    left_out = [v for v in top if v.variant not in chosen and v.ci_low is not None]
    if left_out and not chosen:
        v = left_out[0]
        group.note(f"no candidate: the top variant {v.variant}'s effect {v.effect:.4g} is not distinguishable from 0 "
                   f"(t over {v.n_prompts} prompts, Holm over {len(group.variants)} variants; interval "
                   f"[{v.ci_low:.4g}, {v.ci_high:.4g}])")
    elif left_out:
        group.note(f"{', '.join(v.variant for v in left_out)} of the top {k}: not distinguishable from 0, left out "
                   "of the set")
    return group


def corruption_check(references: list[tuple], rule: Rule, n_boot: int, level: float, seed: int) -> dict | None:
    """Does the corrupted run lose the attribute? Its statistic must be worse than the clean run's (in the
    rule's direction) and outside the clean run's interval over prompts. None without clean or corrupted rows."""
    def arrays(role: str):
        rows = [r for r in references if r[0] == role]
        values = np.array([[np.nan if r[N_KEY + 2 + k] is None else r[N_KEY + 2 + k] for r in rows]
                           for k in range(len(rule.columns))], dtype=np.float64)
        return values, np.array([r[1] for r in rows], dtype=object)

    (clean, clean_prompts), (corrupted, _) = arrays("control"), arrays("corrupted")
    if clean.shape[1] == 0 or corrupted.shape[1] == 0:
        return None
    boot = cluster_bootstrap(clean[None], clean_prompts.astype(str), rule.aggregate, None, n_boot, level, seed)
    corrupted_value = float(aggregate(rule.aggregate, corrupted[:, None, :], np.ones((1, corrupted.shape[1])))[0, 0])
    clean_value, n = float(boot.value[0]), len(set(clean_prompts.tolist()))
    loss = rule.sign * (clean_value - corrupted_value)
    worse = loss > 0 and (clean_value == 0 or loss >= MIN_LOSS * abs(clean_value))
    low, high = (float(boot.ci_low[0]), float(boot.ci_high[0])) if has_interval(n) else (None, None)
    inside = low is not None and low <= corrupted_value <= high
    return {"metric": rule.metric, "clean": clean_value, "clean_ci_low": low, "clean_ci_high": high,
            "corrupted": corrupted_value, "loss": loss, "n_prompts": n, "effective": bool(worse and not inside)}


def corruption_text(c: dict) -> str:
    clean = (f"clean {c['clean']:.4g} [{c['clean_ci_low']:.4g}, {c['clean_ci_high']:.4g}]"
             if c["clean_ci_low"] is not None else f"clean {c['clean']:.4g}")
    return f"{c['metric']}: corrupted {c['corrupted']:.4g}, {clean}, n={c['n_prompts']} prompts"


def choose_candidates(group: GroupRanking, data: GroupData, references: list[tuple], n_boot: int, level: float,
                      seed: int) -> GroupRanking:
    """Mark the group's candidate set under its rule (see the module docstring); returns the group to keep."""
    from analysis.threshold import apply_threshold

    if data.values.size and data.is_constant():
        group.status, group.separated = CONSTANT, False
        group.note(f"{group.rule.metric} is the same number on every row of this group: nothing to rank, no candidates")
        return group
    if group.rule.select != "threshold":
        return _settle(select_top(group))
    corruption = corruption_check(references, group.rule, n_boot, level, seed)
    if corruption is not None and not corruption["effective"]:
        group.status, group.corruption = INEFFECTIVE, corruption
        group.note(f"corruption ineffective: the corrupted run keeps the attribute ({corruption_text(corruption)}); "
                   "restores have nothing to bring back, no candidates (raise noise_scale or use noise_std: subject)")
        return group
    fields = apply_threshold(data, group.rule, n_boot, level, seed)
    return _settle(GroupRanking(group.run, group.method, group.attribute, group.concept, group.rule,
                                corruption=corruption, **fields))


def _settle(group: GroupRanking) -> GroupRanking:
    """The status of a group that was ranked: it has candidates, or why not."""
    if any(v.selected for v in group.variants):
        group.status = SELECTED
    else:
        group.status = ONE_PROMPT if group.n_prompts < 2 else NOTHING
    return group


def varying_metrics(con: duckdb.DuckDBPyConnection, run: Run, present: list[str]) -> list[str]:
    """The run's metric columns that take more than one value."""
    from harness.metrics import direction

    metrics = [c for c in present if direction(c) != 0]
    if not metrics:
        return []
    cols = ", ".join(f'min("{c}") IS DISTINCT FROM max("{c}")' for c in metrics)
    row = con.execute(f"SELECT {cols} FROM read_parquet($g, hive_partitioning = true, union_by_name = true)",
                      {"g": run.results_glob}).fetchone()
    return [c for c, varies in zip(metrics, row) if varies]


def refuse_constant(data: GroupData, rule: Rule, run: Run, attribute: str, con: duckdb.DuckDBPyConnection,
                    present: list[str]) -> None:
    """One line naming a metric that is the same number on every row of an attribute: nothing to rank."""
    if not data.values.size or not data.is_constant():
        return
    cells = np.concatenate([data.values.ravel(), data.reference.ravel()])
    value = float(cells[~np.isnan(cells)][0])
    others = [m for m in varying_metrics(con, run, present) if m != rule.metric]
    where = f"attribute '{attribute}'" if attribute else "the run"
    hint = (f"metrics that vary in this run: {', '.join(others)} (choose one with --metric)" if others
            else "score a metric that varies on this model")
    raise AnalysisError(f"{rule.metric} is constant ({value:g}) on all {int(np.isfinite(cells).sum())} rows of {where} "
                        f"in run '{run.name}': there is nothing to rank; {hint}")
