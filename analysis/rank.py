"""Rank the sites (or windows) of a run by their effect, with bootstrap confidence intervals.

The effect of a variant is the mean of a metric over every (prompt, seed) it was generated for. Which way
is "more effect" comes from the metric's declared direction (MSE up, SSIM down, CLIP to the original
prompt down, ...) and from the method: LocoGen and attention patching look for the sites whose
intervention moves the image most; causal tracing looks for the sites whose *restoration* brings the
corrupted image back, i.e. the smallest distance to the clean image (or the highest CLIP score to the
caption, P1's measure).

The interval is a percentile *cluster* bootstrap (`analysis.bootstrap`): whole prompts are resampled with
their seeds nested inside, and every variant uses the same resamples (fixed RNG seed, so a report is
reproducible). Resampling prompt × seed rows independently would understate the spread whenever prompts
differ more than seeds. `loco candidates` adds paired effects, P(top) and the papers' per-attribute rules.

OCR F1 columns are aggregated as P3 does: F1 of the mean precision and mean recall over the rows of a
variant (2·mean(P)·mean(R)/(mean(P)+mean(R))), not the mean of per-row F1; `aggregate="mean"` overrides.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import numpy as np

from analysis.bootstrap import cluster_bootstrap
from analysis.runs import check_not_multi_model
from harness.errors import UserError, did_you_mean
from harness.metrics import direction

SQL_DIR = Path(__file__).with_name("sql")
DEFAULT_METRICS = {  # first present column wins; the toyworld probes' analog before the image distance
    "locogen": ("clip_t_prompt", "probe_p_prompt", "mse"),
    "attn_patch": ("ocr_char_f1_target", "clip_t_target", "probe_p_target", "mse"),
    "causal_trace": ("clip_t_prompt", "probe_p_prompt", "mse"),
    "attn_contrib": ("attn_contrib",),  # measured, not scored: Zarei et al.'s attention contribution
}
RESTORING_METHODS = ("causal_trace",)
OCR_F1 = re.compile(r"ocr_(char|word)_f1_(text|target)")
AGGREGATES = ("mean", "f1_of_means")


class RankError(UserError):
    """A run directory or metric that cannot be ranked; one line naming what was expected."""


@dataclass(frozen=True)
class RankedSite:
    rank: int
    site: str
    variant: str
    kind: str | None
    index: int | None
    window_start: int | None
    window_size: int | None
    step_start: int | None
    position: str | None
    mean: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class Ranking:
    run_dir: str
    method: str
    metric: str
    order: str  # "desc" or "asc": the sort applied to `mean`
    aggregate: str  # "mean" or "f1_of_means"
    sites: list[RankedSite]
    references: dict[str, float]

    def to_json(self) -> str:
        return json.dumps([asdict(s) | {"metric": self.metric} for s in self.sites], indent=2)


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


DESIGN_COLUMNS = ("site", "kind", "site_index", "window_start", "window_size", "step_start", "steps_patched",
                  "position")


def _sql(name: str, columns: list[str], present: list[str]) -> str:
    lists = ",\n    ".join(f"list({_quote(c)} ORDER BY prompt_id, seed) AS v{i}" for i, c in enumerate(columns))
    not_null = " AND ".join(f"{_quote(c)} IS NOT NULL" for c in columns)
    design = ",\n    ".join(f"any_value({c}) AS {c}" if c in present else f"NULL AS {c}" for c in DESIGN_COLUMNS)
    text = (SQL_DIR / f"{name}.sql").read_text()
    return text.replace("{value_lists}", lists).replace("{not_null}", not_null).replace("{design}", design)


def statistic(aggregate: str, columns: np.ndarray) -> np.ndarray:
    """The aggregate over the last axis of `columns` (shape: n_columns × ... × rows)."""
    if aggregate == "mean":
        return columns[0].mean(axis=-1)
    p, r = columns[0].mean(axis=-1), columns[1].mean(axis=-1)
    return np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)  # f1_of_means, vectorized


def bootstrap_ci(columns: np.ndarray, aggregate: str = "mean", n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0, clusters: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of `aggregate` over the rows (last axis) of `columns`, resampling
    the `clusters` (a prompt id per row) with their rows together; without clusters, rows one by one."""
    columns = np.atleast_2d(np.asarray(columns, dtype=np.float64))
    n = columns.shape[-1]
    clusters = np.arange(n) if clusters is None else np.asarray(clusters)
    result = cluster_bootstrap(columns[None], clusters, aggregate, None, n_boot, level, seed)
    return float(result.ci_low[0]), float(result.ci_high[0])


def _results_glob(run_dir: Path) -> str:
    check_not_multi_model(run_dir)
    if not (run_dir / "results").is_dir() or not any((run_dir / "results").glob("method=*/*.parquet")):
        raise RankError(f"'{run_dir}' has no results (expected {run_dir}/results/method=*/part-*.parquet "
                        "from `loco sweep`)")
    return str(run_dir / "results" / "**" / "*.parquet")


def _choose_metric(metric: str | None, method: str, present: list[str]) -> str:
    """The column to rank by: `metric`, else the method's paper metric, else the first effect column.
    Only effect columns (those with a direction) qualify: ranking by `seed` or `prompt` means nothing."""
    metric_cols = [c for c in present if direction(c) != 0]
    if metric is None:
        preferred = [m for m in DEFAULT_METRICS.get(method, ()) if m in metric_cols]
        metric = (preferred or metric_cols or [None])[0]
        if metric is None:
            raise RankError("this run has no metric columns to rank by (its job's `metrics:` list scored nothing)")
    if metric not in metric_cols:
        raise RankError(f"--metric: '{metric}' is not a metric column of this run"
                        f"{did_you_mean(metric, metric_cols)}; metrics present: {', '.join(metric_cols)}")
    return metric


def _choose_aggregate(aggregate: str | None, metric: str) -> str:
    if aggregate is None:
        return "f1_of_means" if OCR_F1.fullmatch(metric) else "mean"
    if aggregate not in AGGREGATES:
        raise RankError(f"--aggregate: expected one of {', '.join(AGGREGATES)}, got '{aggregate}'")
    if aggregate == "f1_of_means" and not OCR_F1.fullmatch(metric):
        raise RankError(f"--aggregate: f1_of_means needs an OCR F1 metric (ocr_char_f1_target, ...), got '{metric}'")
    return aggregate


def default_order(method: str, metric: str) -> str:
    """Largest effect first: by the metric's direction, flipped for restoring methods (causal tracing)."""
    sign = direction(metric) or 1
    return "desc" if (sign > 0) != (method in RESTORING_METHODS) else "asc"


def rank(run_dir: str | Path, metric: str | None = None, order: str | None = None,
         n_boot: int = 2000, aggregate: str | None = None) -> Ranking:
    """Rank a run's variants by `metric` (default: see `_choose_metric`)."""
    run_dir = Path(run_dir)
    if n_boot < 1:
        raise RankError(f"--bootstrap: expected at least 1 resample, got {n_boot}")
    params = {"results": _results_glob(run_dir)}
    con = duckdb.connect()
    source = "read_parquet($results, union_by_name = true)"
    present = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}", params).fetchall()]
    method = con.execute(f"SELECT any_value(method) FROM {source}", params).fetchall()[0][0]
    metric = _choose_metric(metric, method, present)
    aggregate = _choose_aggregate(aggregate, metric)
    order = order or default_order(method, metric)
    value_columns = [metric] if aggregate == "mean" else [metric.replace("_f1_", "_p_"), metric.replace("_f1_", "_r_")]
    cursor = con.execute(_sql("variant_values", value_columns, present), params)
    names = [d[0] for d in cursor.description]
    records = []
    for row in cursor.fetchall():
        record = dict(zip(names, row))
        record["values"] = np.array([record[f"v{i}"] for i in range(len(value_columns))], dtype=np.float64)
        record["stat"] = float(statistic(aggregate, record["values"]))
        records.append(record)
    records.sort(key=lambda r: (r["stat"] if order == "asc" else -r["stat"], r["site_index"] or 0))
    ranked = []
    for i, r in enumerate(records, start=1):
        low, high = bootstrap_ci(r["values"], aggregate, n_boot=n_boot, clusters=np.array(r["clusters"]))
        ranked.append(RankedSite(i, r["site"], r["variant"], r["kind"], r["site_index"], r["window_start"],
                                 r["window_size"], r["step_start"], r["position"], r["stat"], low, high, int(r["n"])))
    refs = {role: float(statistic(aggregate, np.array(lists, dtype=np.float64)))
            for role, _, *lists in con.execute(_sql("references", value_columns, present), params).fetchall()}
    return Ranking(str(run_dir), method, metric, order, aggregate, ranked, refs)


def format_ranking(ranking: Ranking, top: int | None = None) -> str:
    """A terminal table, best first."""
    shown = ranking.sites[:top] if top else ranking.sites
    width = max([len(s.variant) for s in shown] + [7])
    statistic_name = "F1 of mean P, R" if ranking.aggregate == "f1_of_means" else "mean"
    lines = [f"{ranking.method} · {ranking.metric} ({statistic_name}; {'higher' if ranking.order == 'desc' else 'lower'}"
             f" = stronger effect) · {ranking.run_dir}",
             f"{'rank':>4}  {'variant':<{width}}  {'mean':>10}  {'95% CI':>23}  {'n':>4}  site"]
    for s in shown:
        ci = f"[{s.ci_low:.4g}, {s.ci_high:.4g}]"
        lines.append(f"{s.rank:>4}  {s.variant:<{width}}  {s.mean:>10.4g}  {ci:>23}  {s.n:>4}  {s.site}")
    if ranking.references:
        refs = ", ".join(f"{role} {mean:.4g}" for role, mean in ranking.references.items())
        lines.append(f"references: {refs}")
    return "\n".join(lines)
