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

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import duckdb
import numpy as np

from analysis.bootstrap import cluster_bootstrap, difference_interval, holm, rank_stability, side_pvalues
from analysis.intervals import ALPHA, BOOT_SEED, LEVEL, N_BOOT, few_prompts_note, has_interval
from analysis.runs import Run, require_results
from analysis.selection import Rule, rule_for

SQL_DIR = Path(__file__).with_name("sql")
DESIGN = {"site": "VARCHAR", "sites": "VARCHAR[]", "kind": "VARCHAR", "site_index": "BIGINT",
          "indices": "BIGINT[]", "window_start": "BIGINT", "window_size": "BIGINT", "step_start": "BIGINT",
          "position": "VARCHAR"}
ALL = ""  # the concept of a group that pools every concept of its attribute
DRAW = "noise_draw"  # causal tracing's noise draw per (prompt, seed), when a job averages several


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
    ci_low: float | None  # cluster-bootstrap interval of the effect; None with one prompt (no interval)
    ci_high: float | None
    p_top: float | None  # share of resamples in which this variant is the strongest; None with one prompt
    n_prompts: int
    n_rows: int
    selected: bool = False  # part of the candidate set under the group's rule
    distinct: bool = False  # the effect is distinguishable from 0 in the rule's direction (Holm over the group)

    def strength_interval(self, sign: int) -> tuple[float, float] | None:
        """The interval of sign·effect (larger = stronger under the rule), or None without one."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_low, self.ci_high) if sign > 0 else (-self.ci_high, -self.ci_low)


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
    status: str = "ranked"  # after analysis.choose: "selected", or why there are no candidates
    corruption: dict | None = None  # causal tracing: clean vs corrupted statistic, and whether the corruption worked

    @property
    def label(self) -> str:
        return f"{self.attribute or '(no attribute)'}" + (f" / {self.concept}" if self.concept else "")

    @property
    def n_prompts(self) -> int:
        return max((v.n_prompts for v in self.variants), default=0)

    def note(self, text: str | None) -> None:
        """Add `text` to the group's warning (several reasons are joined by '; ')."""
        if text:
            self.warning = f"{self.warning}; {text}" if self.warning else text

    def records(self) -> list[dict]:
        """Flat rows (one per variant) for SQL views and JSON."""
        base = {"run": self.run, "method": self.method, "attribute": self.attribute, "concept": self.concept or None,
                "metric": self.rule.metric, "aggregate": self.rule.aggregate, "reference_role": self.rule.reference,
                "best": "highest" if self.rule.sign > 0 else "lowest", "rule": self.rule.description,
                "separated": self.separated, "status": self.status}
        return [base | asdict(v) for v in self.variants]


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def columns_of(con: duckdb.DuckDBPyConnection, glob: str) -> list[str]:
    return [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet($g, hive_partitioning = true, "
                                      "union_by_name = true)", {"g": glob}).fetchall()]


def _labels(present: list[str]) -> str:
    return ", ".join(f"coalesce(v.{c}, '') AS {c}" if c in present else f"'' AS {c}" for c in ("attribute", "concept"))


def _draw(present: list[str], alias: str) -> str:
    """The row's noise draw (causal tracing can average several per prompt), 0 where the run has one."""
    return f"coalesce({alias}.{DRAW}, 0)" if DRAW in present else "0"


def load_pairs(con: duckdb.DuckDBPyConnection, run: Run, rule: Rule, present: list[str]) -> list[tuple]:
    design = ",\n    ".join(f"v.{c}" if c in present else f"CAST(NULL AS {t}) AS {c}" for c, t in DESIGN.items())
    pairs = ",\n    ".join(f"v.{_quote(c)}::DOUBLE AS v{i}, r.{_quote(c)}::DOUBLE AS r{i}"
                           for i, c in enumerate(rule.columns))
    text = (SQL_DIR / "paired.sql").read_text().replace("{design}", design).replace("{pairs}", pairs)
    text = text.replace("{labels}", _labels(present)).replace("{draw_v}", _draw(present, "v"))
    text = text.replace("{draw_r}", _draw(present, "r"))
    return con.execute(text, {"results": run.results_glob, "reference": rule.reference}).fetchall()


def load_roles(con: duckdb.DuckDBPyConnection, run: Run, rule: Rule, present: list[str],
               roles: tuple[str, ...] = ("control", "corrupted")) -> list[tuple]:
    """Reference rows (role, prompt_id, seed, draw, attribute, concept, value columns...) of `roles`."""
    values = ", ".join(f"v.{_quote(c)}::DOUBLE" for c in rule.columns)
    return con.execute(
        f"SELECT v.role, v.prompt_id, v.seed, {_draw(present, 'v')}, {_labels(present)}, {values} "
        "FROM read_parquet($results, hive_partitioning = true, union_by_name = true) v "
        "WHERE list_contains($roles, v.role) ORDER BY v.role, v.prompt_id, v.seed",
        {"results": run.results_glob, "roles": list(roles)}).fetchall()


@dataclass
class GroupData:
    """A group's rows as arrays: values (V, K, R), reference (K, R), clusters (R,); `keys` names each row
    (prompt_id, seed, noise draw): two runs with the same keys share their prompts, seeds and noise."""

    variants: list[dict]
    values: np.ndarray
    reference: np.ndarray
    clusters: np.ndarray
    n_rows: np.ndarray  # (V,) non-missing rows per variant
    keys: list[tuple] = field(default_factory=list)

    def subset(self, keep: np.ndarray) -> GroupData:
        values = self.values[:, :, keep]
        return GroupData(self.variants, values, self.reference[:, keep], self.clusters[keep],
                         (~np.isnan(values[:, 0, :])).sum(axis=1),
                         [k for k, kept in zip(self.keys, keep) if kept] if self.keys else [])

    def is_constant(self) -> bool:
        """Every value of the ranked column(s), variants and reference rows alike, is the same number."""
        cells = np.concatenate([self.values.transpose(1, 0, 2).reshape(self.values.shape[1], -1), self.reference], axis=1)
        cells = cells[:, ~np.isnan(cells).all(axis=0)]
        return cells.size > 0 and bool((np.nanmax(cells, axis=1) == np.nanmin(cells, axis=1)).all())


N_KEY = 4  # variant/role, prompt_id, seed, noise draw: the columns before the labels in load_pairs/load_roles


def group_data(rows: list[tuple], n_columns: int) -> GroupData:
    """Rows of one group (variant, prompt_id, seed, draw, attribute, concept, design..., v0, r0, ...) → arrays."""
    n_design = len(DESIGN)
    first = N_KEY + 2  # after the attribute and concept labels
    keys = sorted({(r[1], r[2], r[3]) for r in rows})
    col = {k: i for i, k in enumerate(keys)}
    names = list(dict.fromkeys(r[0] for r in rows))
    row_of = {n: i for i, n in enumerate(names)}
    values = np.full((len(names), n_columns, len(keys)), np.nan)
    reference = np.full((n_columns, len(keys)), np.nan)
    variants: list[dict] = [{} for _ in names]
    for r in rows:
        v, j = row_of[r[0]], col[(r[1], r[2], r[3])]
        variants[v] = dict(zip(DESIGN, r[first : first + n_design])) | {"variant": r[0]}
        tail = r[first + n_design :]
        for k in range(n_columns):
            values[v, k, j] = np.nan if tail[2 * k] is None else tail[2 * k]
            reference[k, j] = np.nan if tail[2 * k + 1] is None else tail[2 * k + 1]
    clusters = np.array([k[0] for k in keys], dtype=object)
    return GroupData(variants, values, reference, clusters, (~np.isnan(values[:, 0, :])).sum(axis=1), keys)


def rank_group(data: GroupData, rule: Rule, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = BOOT_SEED) -> dict:
    """Ranked variants of one group plus the separation of the top two (as a dict of GroupRanking fields).
    With one prompt there is nothing to resample: no interval, no P(top), nothing separated."""
    has_reference = not np.isnan(data.reference).all()
    boot = cluster_bootstrap(data.values, data.clusters.astype(str), rule.aggregate,
                             data.reference if has_reference else None, n_boot, level, seed)
    p_top = rank_stability(boot.draws, rule.sign)
    n_prompts = len(set(data.clusters.tolist()))
    distinct = holm(side_pvalues(boot.draws, boot.effect, rule.sign, n_prompts)) < ALPHA
    order = sorted(range(len(data.variants)),
                   key=lambda i: (-rule.sign * np.nan_to_num(boot.effect[i], nan=-rule.sign * np.inf),
                                  data.variants[i]["site_index"] or 0, data.variants[i]["variant"]))
    spread = has_interval(n_prompts)
    ranked = []
    for rank, i in enumerate(order, start=1):
        d = data.variants[i]
        ranked.append(RankedVariant(
            rank, d["variant"], d["site"], list(d["sites"] or []), d["kind"], d["site_index"], list(d["indices"] or []),
            d["window_start"], d["window_size"], d["step_start"], d["position"], float(boot.value[i]),
            float(boot.reference), float(boot.effect[i]), float(boot.ci_low[i]) if spread else None,
            float(boot.ci_high[i]) if spread else None, float(p_top[i]) if spread else None, n_prompts,
            int(data.n_rows[i]), distinct=bool(spread and distinct[i])))
    gap, separated, warning = None, spread, few_prompts_note(n_prompts)
    if len(order) > 1 and spread:
        gap = difference_interval(boot.draws, order[0], order[1], rule.sign, level)
        separated = gap[0] > 0
        if not separated:
            warning = (f"top candidates not separated: {ranked[0].variant} vs {ranked[1].variant} "
                       f"(difference {level:.0%} CI [{gap[0]:.4g}, {gap[1]:.4g}] includes 0; "
                       f"P(top) {ranked[0].p_top:.2f}, n={n_prompts} prompts)" + (f"; {warning}" if warning else ""))
    # The resamples themselves, kept so a comparison of two runs over the same prompts can be paired:
    # the same seed and the same sorted prompt ids give both runs the same resample weights; `keys` (prompt,
    # seed, noise draw) says whether the two runs' rows share their generation noise too.
    resamples = {"prompts": tuple(sorted(set(data.clusters.astype(str).tolist()))), "n_boot": n_boot, "seed": seed,
                 "keys": tuple(data.keys), "draws": {d["variant"]: boot.draws[:, i] for i, d in enumerate(data.variants)}}
    return {"variants": ranked, "separated": separated, "gap_ci": gap, "warning": warning,
            "extra": {"resamples": resamples}}


def rank_run(run: Run, metric: str | None = None, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = BOOT_SEED,
             by_concept: bool = True, top: int | None = None) -> list[GroupRanking]:
    """Every attribute (and, with `by_concept`, every concept) of `run`, ranked under its paper rule, with
    the candidate set chosen by `analysis.choose` (`top` overrides the paper's set size of a top-k rule).
    A metric that is constant over an attribute's rows is refused (one line naming it)."""
    from analysis.choose import choose_candidates, refuse_constant

    require_results(run)
    con = duckdb.connect()
    present = columns_of(con, run.results_glob)
    method = run.method
    attributes = [r[0] for r in con.execute(
        "SELECT DISTINCT coalesce(attribute, '') FROM read_parquet($g, hive_partitioning = true, union_by_name = true) "
        "WHERE role = 'variant' ORDER BY 1", {"g": run.results_glob}).fetchall()] if "attribute" in present else [""]
    out = []
    for attribute in attributes:
        rule = rule_for(method, attribute, present, metric, run.model.get("arch"))
        if top is not None:
            rule = replace(rule, set_size=top)
        rows = [r for r in load_pairs(con, run, rule, present) if r[N_KEY] == attribute]
        references = ([r for r in load_roles(con, run, rule, present) if r[N_KEY] == attribute]
                      if rule.select == "threshold" else [])
        groups = [(ALL, rows)]
        if by_concept:
            groups += [(c, [r for r in rows if r[N_KEY + 1] == c]) for c in sorted({r[N_KEY + 1] for r in rows}) if c]
        for concept, group_rows in groups:
            data = group_data(group_rows, len(rule.columns))
            if concept == ALL:
                refuse_constant(data, rule, run, attribute, con, present)
            mine = [r for r in references if not concept or r[N_KEY + 1] == concept]
            out.append(choose_candidates(GroupRanking(run.name, method, attribute, concept, rule, **rank_group(
                data, rule, n_boot, level, seed)), data, mine, n_boot, level, seed))
    return out
