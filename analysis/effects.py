"""Paired effects per attribute: each variant against its reference rows, with cluster-bootstrap
intervals, P(top) and a flag when the top candidates are not separated.

The effect of a variant on one (prompt, seed) is its metric minus the same prompt and seed's reference
row (variant − control for LocoGen and patching, restored − corrupted for causal tracing); the group's
effect is the statistic over every row minus the reference statistic (for a mean, the mean of the
paired differences). Groups are the paper's unit of reporting: one per attribute (style, object, fact,
...; docs/methods.md §1.2, §2.1) and, inside it, one per concept ("van gogh"). All variants of a group share
one set of prompt resamples (`analysis.bootstrap`), so P(top) and the top-1 vs top-2 difference are
honest about prompt-to-prompt variation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from analysis.bootstrap import cluster_bootstrap, difference_interval, rank_stability
from analysis.runs import Run, require_results
from analysis.selection import Rule, rule_for

SQL_DIR = Path(__file__).with_name("sql")
DESIGN = {"site": "VARCHAR", "sites": "VARCHAR[]", "kind": "VARCHAR", "site_index": "BIGINT",
          "indices": "BIGINT[]", "window_start": "BIGINT", "window_size": "BIGINT", "step_start": "BIGINT",
          "position": "VARCHAR"}
ALL = ""  # the concept of a group that pools every concept of its attribute


@dataclass(frozen=True)
class RankedVariant:
    rank: int
    variant: str
    site: str | None
    sites: list[str]
    kind: str | None
    index: int | None
    indices: list[int]
    window_start: int | None
    window_size: int | None
    step_start: int | None
    position: str | None
    value: float  # the statistic of the variant's rows
    reference: float  # the statistic of the paired reference rows
    effect: float  # value − reference
    ci_low: float  # cluster-bootstrap interval of the effect
    ci_high: float
    p_top: float  # share of resamples in which this variant is the strongest
    n_prompts: int
    n_rows: int
    selected: bool = False  # part of the candidate set under the group's rule


@dataclass
class GroupRanking:
    """One attribute (and concept) of one run, ranked under the paper's rule."""

    run: str
    method: str
    attribute: str
    concept: str  # "" = every concept of the attribute
    rule: Rule
    variants: list[RankedVariant]
    separated: bool  # the top variant's effect is separated from the runner-up's (difference CI excludes 0)
    gap_ci: tuple[float, float] | None  # interval of the top-1 − top-2 effect difference (strength sign)
    warning: str | None = None
    threshold: dict | None = None  # causal tracing: the threshold and how it was chosen
    extra: dict = field(default_factory=dict)  # "resamples": the bootstrap draws per variant (analysis.regress pairs them)

    @property
    def label(self) -> str:
        return f"{self.attribute or '(no attribute)'}" + (f" / {self.concept}" if self.concept else "")

    def records(self) -> list[dict]:
        """Flat rows (one per variant) for SQL views and JSON."""
        base = {"run": self.run, "method": self.method, "attribute": self.attribute, "concept": self.concept or None,
                "metric": self.rule.metric, "aggregate": self.rule.aggregate, "reference_role": self.rule.reference,
                "best": "highest" if self.rule.sign > 0 else "lowest", "rule": self.rule.description,
                "separated": self.separated}
        return [base | asdict(v) for v in self.variants]


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def columns_of(con: duckdb.DuckDBPyConnection, glob: str) -> list[str]:
    return [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet($g, hive_partitioning = true, "
                                      "union_by_name = true)", {"g": glob}).fetchall()]


def load_pairs(con: duckdb.DuckDBPyConnection, run: Run, rule: Rule, present: list[str]) -> list[tuple]:
    design = ",\n    ".join(f"v.{c}" if c in present else f"CAST(NULL AS {t}) AS {c}" for c, t in DESIGN.items())
    pairs = ",\n    ".join(f"v.{_quote(c)}::DOUBLE AS v{i}, r.{_quote(c)}::DOUBLE AS r{i}"
                           for i, c in enumerate(rule.columns))
    labels = ", ".join(f"coalesce(v.{c}, '') AS {c}" if c in present else f"'' AS {c}" for c in ("attribute", "concept"))
    text = (SQL_DIR / "paired.sql").read_text().replace("{design}", design).replace("{pairs}", pairs)
    text = text.replace("{labels}", labels)
    return con.execute(text, {"results": run.results_glob, "reference": rule.reference}).fetchall()


@dataclass
class GroupData:
    """A group's rows as arrays: values (V, K, R), reference (K, R), clusters (R,)."""

    variants: list[dict]
    values: np.ndarray
    reference: np.ndarray
    clusters: np.ndarray
    n_rows: np.ndarray  # (V,) non-missing rows per variant

    def subset(self, keep: np.ndarray) -> GroupData:
        values = self.values[:, :, keep]
        return GroupData(self.variants, values, self.reference[:, keep], self.clusters[keep],
                         (~np.isnan(values[:, 0, :])).sum(axis=1))


def group_data(rows: list[tuple], n_columns: int) -> GroupData:
    """Rows of one group (variant, prompt_id, seed, attribute, concept, design..., v0, r0, ...) → arrays."""
    n_design = len(DESIGN)
    keys = sorted({(r[1], r[2]) for r in rows})
    col = {k: i for i, k in enumerate(keys)}
    names = list(dict.fromkeys(r[0] for r in rows))
    row_of = {n: i for i, n in enumerate(names)}
    values = np.full((len(names), n_columns, len(keys)), np.nan)
    reference = np.full((n_columns, len(keys)), np.nan)
    variants: list[dict] = [{} for _ in names]
    for r in rows:
        v, j = row_of[r[0]], col[(r[1], r[2])]
        variants[v] = dict(zip(DESIGN, r[5 : 5 + n_design])) | {"variant": r[0]}
        tail = r[5 + n_design :]
        for k in range(n_columns):
            values[v, k, j] = np.nan if tail[2 * k] is None else tail[2 * k]
            reference[k, j] = np.nan if tail[2 * k + 1] is None else tail[2 * k + 1]
    clusters = np.array([k[0] for k in keys], dtype=object)
    return GroupData(variants, values, reference, clusters, (~np.isnan(values[:, 0, :])).sum(axis=1))


def rank_group(data: GroupData, rule: Rule, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Ranked variants of one group plus the separation of the top two (as a dict of GroupRanking fields)."""
    has_reference = not np.isnan(data.reference).all()
    boot = cluster_bootstrap(data.values, data.clusters.astype(str), rule.aggregate,
                             data.reference if has_reference else None, n_boot, level, seed)
    p_top = rank_stability(boot.draws, rule.sign)
    order = sorted(range(len(data.variants)),
                   key=lambda i: (-rule.sign * np.nan_to_num(boot.effect[i], nan=-rule.sign * np.inf),
                                  data.variants[i]["site_index"] or 0, data.variants[i]["variant"]))
    n_prompts = len(set(data.clusters.tolist()))
    ranked = []
    for rank, i in enumerate(order, start=1):
        d = data.variants[i]
        ranked.append(RankedVariant(
            rank, d["variant"], d["site"], list(d["sites"] or []), d["kind"], d["site_index"], list(d["indices"] or []),
            d["window_start"], d["window_size"], d["step_start"], d["position"], float(boot.value[i]),
            float(boot.reference), float(boot.effect[i]), float(boot.ci_low[i]), float(boot.ci_high[i]),
            float(p_top[i]), n_prompts, int(data.n_rows[i])))
    gap, separated, warning = None, True, None
    if len(order) > 1:
        gap = difference_interval(boot.draws, order[0], order[1], rule.sign, level)
        separated = gap[0] > 0
        if not separated:
            warning = (f"top candidates not separated: {ranked[0].variant} vs {ranked[1].variant} "
                       f"(difference {level:.0%} CI [{gap[0]:.4g}, {gap[1]:.4g}] includes 0; "
                       f"P(top) {ranked[0].p_top:.2f}); more prompts would tell them apart")
    # The resamples themselves, kept so a comparison of two runs over the same prompts can be paired:
    # the same seed and the same sorted prompt ids give both runs the same resample weights.
    resamples = {"prompts": tuple(sorted(set(data.clusters.astype(str).tolist()))), "n_boot": n_boot, "seed": seed,
                 "draws": {d["variant"]: boot.draws[:, i] for i, d in enumerate(data.variants)}}
    return {"variants": ranked, "separated": separated, "gap_ci": gap, "warning": warning,
            "extra": {"resamples": resamples}}


def rank_run(run: Run, metric: str | None = None, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
             by_concept: bool = True) -> list[GroupRanking]:
    """Every attribute (and, with `by_concept`, every concept) of `run`, ranked under its paper rule."""
    from analysis.threshold import apply_threshold

    require_results(run)
    con = duckdb.connect()
    present = columns_of(con, run.results_glob)
    method = run.method
    attributes = [r[0] for r in con.execute(
        "SELECT DISTINCT coalesce(attribute, '') FROM read_parquet($g, hive_partitioning = true, union_by_name = true) "
        "WHERE role = 'variant' ORDER BY 1", {"g": run.results_glob}).fetchall()] if "attribute" in present else [""]
    out = []
    for attribute in attributes:
        rule = rule_for(method, attribute, present, metric)
        rows = [r for r in load_pairs(con, run, rule, present) if r[3] == attribute]
        groups = [(ALL, rows)]
        if by_concept:
            groups += [(c, [r for r in rows if r[4] == c]) for c in sorted({r[4] for r in rows}) if c]
        for concept, group_rows in groups:
            data = group_data(group_rows, len(rule.columns))
            if rule.select == "threshold":
                fields = apply_threshold(data, rule, n_boot, level, seed)
            else:
                fields = rank_group(data, rule, n_boot, level, seed)
                if fields["variants"]:
                    fields["variants"][0] = _selected(fields["variants"][0])
            out.append(GroupRanking(run.name, method, attribute, concept, rule, **fields))
    return out


def _selected(v: RankedVariant) -> RankedVariant:
    return RankedVariant(**(asdict(v) | {"selected": True}))


def format_groups(groups: list[GroupRanking], top: int | None = 10) -> str:
    """Terminal tables, one per group, strongest first."""
    blocks = []
    for g in groups:
        shown = g.variants[:top] if top else g.variants
        width = max([len(v.variant) for v in shown] + [7])
        lines = [f"{g.method} · {g.label} · {g.rule.description}",
                 f"{'rank':>4}  {'variant':<{width}}  {'value':>9}  {'effect':>9}  {'95% CI (effect)':>23}  "
                 f"{'P(top)':>6}  {'prompts':>7}"]
        for v in shown:
            ci = f"[{v.ci_low:.4g}, {v.ci_high:.4g}]"
            mark = " *" if v.selected else ""
            lines.append(f"{v.rank:>4}  {v.variant:<{width}}  {v.value:>9.4g}  {v.effect:>9.4g}  {ci:>23}  "
                         f"{v.p_top:>6.2f}  {v.n_prompts:>7}{mark}")
        if g.threshold:
            lines.append(f"threshold {g.threshold['value']:.4g} ({g.threshold['how']})")
        if g.warning:
            lines.append(f"warning: {g.warning}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
