"""`loco rank`: the tables a person reads — per attribute under the paper's rule, or one pooled table.

**Per attribute** (the default; `format_groups`): each attribute (and concept) of a run ranked under its
paper's rule (`analysis.effects`, `analysis.selection`): paired effects with cluster-bootstrap intervals,
the number of prompts beside every interval and P(top), `*` on the candidate set (`analysis.choose`),
and why a group has no candidates (one prompt, a constant metric, an ineffective corruption). Facts are
ranked by CLIP to the target, style and objects by CLIP to the prompt, as P2 does.

**Pooled** (`loco rank --pooled`; `rank`): one table over every row of the run, the mean of one metric per
variant whatever the attribute — what the known-answer tests read on planted models. Which way is "more
effect" comes from the metric's direction (MSE up, SSIM down, CLIP to the prompt down, ...) and the
method: LocoGen and patching look for the largest change, causal tracing for the best restoration (the
smallest distance to the clean image, or the highest CLIP to the caption). OCR F1 is aggregated as P3
does, the F1 of mean precision and mean recall; `aggregate="mean"` overrides.

Both use the same cluster bootstrap (`analysis.bootstrap`: whole prompts resampled with their seeds), the
same number of resamples and the same RNG seed (`analysis.intervals`), and both refuse a metric that is
constant over the rows they would rank.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import numpy as np

from analysis.bootstrap import cluster_bootstrap
from analysis.effects import GroupRanking
from analysis.intervals import BOOT_SEED, LEVEL, MIN_PROMPTS, N_BOOT, interval_text, p_top_text
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
    ci_low: float | None  # None with one prompt: no interval
    ci_high: float | None
    n: int  # rows
    n_prompts: int


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


def bootstrap_ci(columns: np.ndarray, aggregate: str = "mean", n_boot: int = N_BOOT, level: float = LEVEL,
                 seed: int = BOOT_SEED, clusters: np.ndarray | None = None) -> tuple[float, float]:
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
         n_boot: int = N_BOOT, aggregate: str | None = None) -> Ranking:
    """Rank a run's variants by `metric` (default: see `_choose_metric`), all rows pooled."""
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
    cells = np.concatenate([r["values"].ravel() for r in records]) if records else np.array([])
    if cells.size and (cells == cells[0]).all():
        raise RankError(f"{metric} is constant ({cells[0]:g}) on all {cells.size} variant rows of '{run_dir}': "
                        "there is nothing to rank; choose a metric that varies with --metric")
    records.sort(key=lambda r: (r["stat"] if order == "asc" else -r["stat"], r["site_index"] or 0))
    ranked = []
    for i, r in enumerate(records, start=1):
        n_prompts = len(set(r["clusters"]))
        low, high = bootstrap_ci(r["values"], aggregate, n_boot=n_boot, clusters=np.array(r["clusters"]))
        if n_prompts < 2:
            low = high = None
        ranked.append(RankedSite(i, r["site"], r["variant"], r["kind"], r["site_index"], r["window_start"],
                                 r["window_size"], r["step_start"], r["position"], r["stat"], low, high, int(r["n"]),
                                 n_prompts))
    refs = {role: float(statistic(aggregate, np.array(lists, dtype=np.float64)))
            for role, _, *lists in con.execute(_sql("references", value_columns, present), params).fetchall()}
    return Ranking(str(run_dir), method, metric, order, aggregate, ranked, refs)


def format_ranking(ranking: Ranking, top: int | None = None) -> str:
    """The pooled table, best first, with the prompts behind each interval."""
    shown = ranking.sites[:top] if top else ranking.sites
    width = max([len(s.variant) for s in shown] + [7])
    statistic_name = "F1 of mean P, R" if ranking.aggregate == "f1_of_means" else "mean"
    lines = [f"{ranking.method} · {ranking.metric} ({statistic_name}; {'higher' if ranking.order == 'desc' else 'lower'}"
             f" = stronger effect; every attribute pooled) · {ranking.run_dir}",
             f"{'rank':>4}  {'variant':<{width}}  {'mean':>10}  {'95% CI, prompts':>31}  {'rows':>4}  site"]
    for s in shown:
        ci = interval_text(s.ci_low, s.ci_high, s.n_prompts)
        lines.append(f"{s.rank:>4}  {s.variant:<{width}}  {s.mean:>10.4g}  {ci:>31}  {s.n:>4}  {s.site}")
    if ranking.references:
        refs = ", ".join(f"{role} {mean:.4g}" for role, mean in ranking.references.items())
        lines.append(f"references: {refs}")
    n = max((s.n_prompts for s in ranking.sites), default=0)
    if n < MIN_PROMPTS:
        lines.append(f"note: {n} prompts (< {MIN_PROMPTS}): intervals are rough" if n > 1
                     else "note: one prompt: no intervals")
    return "\n".join(lines)


def format_groups(groups: list[GroupRanking], top: int | None = 10) -> str:
    """Terminal tables, one per attribute (and concept), strongest first; `*` marks the candidate set."""
    blocks = []
    for g in groups:
        shown = g.variants[:top] if top else g.variants
        width = max([len(v.variant) for v in shown] + [7])
        lines = [f"{g.method} · {g.label} · {g.rule.description}",
                 f"{'rank':>4}  {'variant':<{width}}  {'value':>9}  {'effect':>9}  {'95% CI (effect), prompts':>33}  "
                 f"{'P(top)':>6}"]
        for v in shown:
            ci = interval_text(v.ci_low, v.ci_high, v.n_prompts)
            lines.append(f"{v.rank:>4}  {v.variant:<{width}}  {v.value:>9.4g}  {v.effect:>9.4g}  {ci:>33}  "
                         f"{p_top_text(v.p_top):>6}{' *' if v.selected else ''}")
        if g.status != "selected":
            lines.append(f"no candidates: {g.status}")
        if g.threshold:
            value = g.threshold["value"]
            cut = "none" if value is None else f"effect {'>' if g.rule.sign > 0 else '<'} {value:.4g}"
            lines.append(f"threshold: {cut} ({g.threshold['how']})")
        if g.warning:
            lines.append(f"warning: {g.warning}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
