"""Agreement across localizers: do attention contribution, LocoGen and patching point at the same layers?

Zarei et al. (NeurIPS 2025) rank blocks by how much of their attention output comes from a concept's tokens and
check the top ones by intervening there; P2 and P3 rank layers by the intervention itself. Both claim the
same layers; this module measures it, on the prompts both runs generated.

For every pair of runs of different methods over one model, per attribute and per concept (the groups of
`analysis.effects`), on the prompts both groups hold (matched by prompt text):

* each run's **strength** per site: the paired effect of its variant (value − reference; the value itself for
  attn_contrib, which has no reference) signed by its own paper rule so that larger = stronger, computed on
  the common prompts (the run's ranking as `loco rank` shows it; ranked again on the common prompts when the
  two groups' prompts differ). A site with
  several variants (a `step_start` sweep, causal tracing's token positions) keeps its strongest. Windows
  are keyed by their joined sites, so compare LocoGen at ``window: 1`` with the per-block methods;
* **Kendall's τ-b** over the sites both runs ranked, a site's strength taken as 0 where its effect is not
  distinguishable from 0 (below): the order of layers that do nothing is seed noise, and counting it would
  read two methods that find the same one layer as disagreeing. Ties count for neither order;
* the **top-k overlap**: each run's strongest sites *with an effect* — distinguishable from 0 on its rule's
  side, as a candidate must be (`analysis.choose`: an interval over prompts, Holm over the group; so none
  with one prompt) — at most k (default 6, Zarei et al.'s K), how many both hold and that count over the
  larger set (1: the same layers; none when neither run has an effect).

The numbers come from one SQL definition, the ``agreement`` view (``analysis/sql/agreement_view.sql``) over
the per-site strengths computed here (``agreement_sites``): `loco sql` has both views, `loco candidates`
writes the rows into its file (``agreement``), `loco report` shows them. On a planted model, where one layer
carries the text, every pair agrees exactly (τ = 1, share 1); a block that reads the concept strongly but
whose output never reaches the image is ranked by the attention contribution and not by the interventions,
and the agreement drops (`tests/integration/test_agreement.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from scipy import stats

from analysis.choose import distinguishable
from analysis.effects import ALL, N_KEY, GroupRanking, RankedVariant, columns_of, group_data, load_pairs, rank_group
from analysis.runs import Run

TOP_K = 6  # Zarei et al.'s K: the blocks a concept is localized to
SQL = Path(__file__).with_name("sql") / "agreement_view.sql"
SITES_SCHEMA = pa.schema([("run_a", pa.string()), ("method_a", pa.string()), ("run_b", pa.string()),
                          ("method_b", pa.string()), ("attribute", pa.string()), ("concept", pa.string()),
                          ("site", pa.string()), ("label", pa.string()), ("site_index", pa.int64()),
                          ("strength_a", pa.float64()),
                          ("strength_b", pa.float64()), ("effect_a", pa.bool_()), ("effect_b", pa.bool_()),
                          ("n_prompts", pa.int64()), ("top_k", pa.int64())])


@dataclass(frozen=True)
class Agreement:
    """One row of the ``agreement`` view (see the module docstring)."""

    attribute: str
    concept: str | None
    run_a: str
    method_a: str
    run_b: str
    method_b: str
    n_prompts: int  # prompts both groups hold
    n_sites: int  # sites both runs ranked
    kendall_tau: float | None
    top_k: int
    k: int  # the larger top set (sites with an effect, at most top_k)
    top_k_overlap: int
    top_k_share: float | None
    top_a: list[str]
    top_b: list[str]


class _Prompts:
    """Per run: its prompt ids' texts, and its rows re-read when a group must be cut to common prompts."""

    def __init__(self, runs: list[Run]):
        self.runs = {r.name: r for r in runs}
        self._texts: dict[str, dict[str, str]] = {}

    def texts(self, run: str) -> dict[str, str]:
        if run not in self._texts:
            rows = duckdb.connect().execute(
                "SELECT DISTINCT prompt_id, prompt FROM read_parquet($g, hive_partitioning = true, "
                "union_by_name = true)", {"g": self.runs[run].results_glob}).fetchall()
            self._texts[run] = dict(rows)
        return self._texts[run]

    def of(self, group: GroupRanking) -> dict[str, str]:
        """The group's prompts: text -> prompt id."""
        texts = self.texts(group.run)
        return {texts[pid]: pid for pid in group.extra["resamples"]["prompts"]}


@dataclass(frozen=True)
class Strength:
    value: float  # the effect signed by the run's rule: larger = stronger
    has_effect: bool  # distinguishable from 0 on the rule's side (`analysis.choose.distinguishable`)
    index: int  # forward index (ties in the top sets are broken by it)
    label: str  # kind#index


def _rerank(group: GroupRanking, keep: set[str], prompts: _Prompts) -> list[RankedVariant]:
    """`group` ranked again on the prompt ids `keep` only, as `loco rank` would rank a run of those prompts."""
    run = prompts.runs[group.run]
    con = duckdb.connect()
    rows = [r for r in load_pairs(con, run, group.rule, columns_of(con, run.results_glob))
            if r[N_KEY] == group.attribute and (group.concept == ALL or r[N_KEY + 1] == group.concept)]
    data = group_data(rows, len(group.rule.columns))
    data = data.subset(np.isin(data.clusters.astype(str), sorted(keep)))
    return rank_group(data, group.rule, group.extra["resamples"]["n_boot"])["variants"]


def strengths(group: GroupRanking, keep: set[str] | None, prompts: _Prompts) -> dict[str, Strength]:
    """site -> its `Strength` in `group`, on the prompt ids `keep` (None: all of the group's prompts)."""
    sign = group.rule.sign
    out: dict[str, Strength] = {}
    for v in group.variants if keep is None else _rerank(group, keep, prompts):
        if v.site is None or v.effect is None or np.isnan(v.effect):
            continue
        label = f"{v.kind}#{v.index}" if v.kind and "+" not in v.site else v.site
        strength = Strength(sign * v.effect, distinguishable(v, sign), -1 if v.index is None else v.index, label)
        if v.site not in out or strength.value > out[v.site].value:
            out[v.site] = strength
    return out


def agreement_sites(groups: list[GroupRanking], runs: list[Run], top_k: int = TOP_K) -> list[dict]:
    """The ``agreement_sites`` rows: every pair of runs of different methods, per attribute and concept, on
    their common prompts, with at least two common sites."""
    prompts = _Prompts(runs)
    records = []
    for a, b in combinations(groups, 2):
        if (a.attribute, a.concept) != (b.attribute, b.concept) or a.run == b.run or a.method == b.method:
            continue
        pa_, pb = prompts.of(a), prompts.of(b)
        common = sorted(set(pa_) & set(pb))
        if not common:
            continue
        same = len(common) == len(pa_) == len(pb)
        sa = strengths(a, None if same else {pa_[t] for t in common}, prompts)
        sb = strengths(b, None if same else {pb[t] for t in common}, prompts)
        sites = sorted(set(sa) & set(sb))
        if len(sites) < 2:
            continue
        for site in sites:
            records.append({"run_a": a.run, "method_a": a.method, "run_b": b.run, "method_b": b.method,
                            "attribute": a.attribute, "concept": a.concept, "site": site, "label": sa[site].label,
                            "site_index": sa[site].index, "strength_a": sa[site].value, "strength_b": sb[site].value,
                            "effect_a": sa[site].has_effect, "effect_b": sb[site].has_effect,
                            "n_prompts": len(common), "top_k": top_k})
    return records


def kendall_tau(a: list[float], b: list[float]) -> float | None:
    """Kendall's τ-b of two strength lists in the same site order (scipy; ties count for neither order).
    None where a list orders no pair (a constant list: τ-b is 0/0) or holds fewer than two sites."""
    if a is None or b is None or len(a) < 2:
        return None
    tau = stats.kendalltau(a, b).statistic
    return None if np.isnan(tau) else float(tau)


def create_views(con: duckdb.DuckDBPyConnection, sites: list[dict]) -> None:
    """The ``agreement_sites`` table and the ``agreement`` view on `con` (with `kendall_tau`, which the view
    calls, registered as a SQL function)."""
    doubles = duckdb.list_type("DOUBLE")
    con.create_function("kendall_tau", kendall_tau, [doubles, doubles], "DOUBLE",
                        null_handling="special", side_effects=False)
    con.register("agreement_sites_data", pa.Table.from_pylist(sites, schema=SITES_SCHEMA))
    con.execute("CREATE VIEW agreement_sites AS SELECT * FROM agreement_sites_data")
    con.execute(SQL.read_text())


def agreement_table(groups: list[GroupRanking], runs: list[Run], top_k: int = TOP_K) -> list[Agreement]:
    """The ``agreement`` view's rows for `groups` (the rankings of `runs`)."""
    con = duckdb.connect()
    create_views(con, agreement_sites(groups, runs, top_k))
    cursor = con.execute("SELECT * FROM agreement")
    names = [d[0] for d in cursor.description]
    return [Agreement(**dict(zip(names, row))) for row in cursor.fetchall()]
