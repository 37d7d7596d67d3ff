"""`loco regress`: does a new checkpoint keep its knowledge where the last one did?

Two runs of the same job (a baseline and a candidate: the same job on a new checkpoint, or a re-run) are
ranked under the same paper rules (`analysis.effects`), attribute by attribute, and compared. Every check
is built to pass an A/A comparison (the same model, other seeds) and to fail when the knowledge moved:

* **rank agreement** (Kendall τ, Spearman ρ) and the **top-k overlap** are computed over the sites whose
  effect is distinguishable from 0 in either run (`RankedVariant.distinct`: t over prompts, Holm over
  the group). The order of layers that do nothing is seed noise; counting it made an A/A re-run of the
  demo fail with τ = 0.20.
* **the same top variant**: the baseline's strongest variant must not be separated from (worse than) the
  candidate's strongest in the candidate run; two tied layers may trade places, a moved layer may not.
* **per-site drift** (candidate − baseline effect) in *effect units*: a site drifts when its drift is
  distinguishable from 0 after Holm's (or Benjamini–Hochberg's, `drift_correction: fdr_bh`) correction
  over the sites of the group, and larger than `max_drift` × the strongest effect of the two runs (and
  than `max_abs_drift` in metric units). Runs that share prompts, seeds and noise (the same job: same
  prompt ids, generation seeds, noise draws and noise settings) are compared *paired*: the same prompt
  resamples for both runs. Otherwise the two runs' resamples are independent ("unpaired"), which is what
  an A/A comparison across seeds is.
* **new failures**: failed units in the candidate's `failures.parquet`, or a candidate run that stopped.

A metric that is constant over an attribute's rows (CLIP with random weights reads 0 everywhere) has no
ranking to compare: it is refused in one line (exit 2), never passed with τ = 1.

The thresholds live in a regression file (YAML, `Thresholds`; example `jobs/regression/thresholds.yaml`). Exit
status: 0 = every check passes, 1 = a regression, 2 = a usage error. Reports: Markdown and JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import stats

from analysis.bootstrap import CORRECTIONS, two_sided_pvalues
from analysis.effects import GroupRanking, rank_run
from analysis.intervals import LEVEL, N_BOOT
from analysis.runs import AnalysisError, Run, open_run, require_results


class Thresholds(BaseModel):
    """What counts as a regression (every key optional; these are the defaults)."""

    model_config = ConfigDict(extra="forbid")
    min_kendall_tau: float = Field(0.5, ge=-1, le=1)  # rank agreement over the sites with an effect
    min_spearman: float = Field(0.6, ge=-1, le=1)
    top_k: int = Field(3, ge=1)  # k of the top-k overlap
    min_top_k_overlap: float = Field(0.66, ge=0, le=1)  # share of the baseline's top k still in the candidate's
    require_same_top: bool = True  # the baseline's strongest variant must not fall behind the candidate's
    max_drift: float = Field(0.25, ge=0)  # effect units: a share of the strongest effect of the two runs
    max_abs_drift: float = Field(0.0, ge=0)  # metric units: drift below this is never flagged either
    drift_correction: Literal["holm", "fdr_bh"] = "holm"  # multiplicity control over the sites of a group
    alpha: float = Field(0.05, gt=0, lt=1)  # error rate of that control
    max_drifting_sites: int = Field(0, ge=0)
    max_new_failures: int = Field(0, ge=0)


def load_thresholds(path: str | Path | None) -> Thresholds:
    if path is None:
        return Thresholds()
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"--thresholds: file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return Thresholds.model_validate(data)
    except yaml.YAMLError as exc:
        raise AnalysisError(f"{path}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            from harness.errors import did_you_mean

            raise AnalysisError(f"{path}: {key}: unknown key{did_you_mean(key, Thresholds.model_fields)}") from None
        raise AnalysisError(f"{path}: {key}: {err['msg']}") from None


@dataclass
class Check:
    name: str
    passed: bool
    value: float | int | str | None
    limit: float | int | str | None
    group: str = ""


@dataclass
class GroupComparison:
    group: str
    metric: str
    n_common: int
    distinct_sites: list[str]  # sites with an effect in either run: what τ, ρ and the top-k compare
    kendall_tau: float | None  # None with fewer than 2 such sites
    spearman: float | None
    top_baseline: str
    top_candidate: str
    same_top: bool  # the baseline's top is not separated from the candidate's top in the candidate run
    top_k_overlap: float
    set_jaccard: float
    paired: bool  # prompts, seeds and noise match: drift intervals over shared resamples
    drift_limit: float  # |drift| above this (and distinguishable from 0 after correction) is a drift
    drifting: list[dict] = field(default_factory=list)


@dataclass
class Verdict:
    baseline: str
    candidate: str
    passed: bool
    checks: list[Check]
    groups: list[GroupComparison]
    new_failures: int

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def failing_sites(self) -> dict[str, list[str]]:
        """Per group, the sites behind a failed check: drifting sites and a top that moved."""
        out: dict[str, list[str]] = {}
        for g in self.groups:
            sites = [d["variant"] for d in g.drifting]
            if not g.same_top:
                sites += [s for s in (g.top_baseline, g.top_candidate) if s not in sites]
            if sites:
                out[g.group] = sites
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"verdict": "pass" if self.passed else "regression",
                                          "failing_sites": self.failing_sites}, indent=2, default=float)

    def to_markdown(self) -> str:
        lines = [f"# loco regress: {'PASS' if self.passed else 'REGRESSION'}", "",
                 f"baseline `{self.baseline}` · candidate `{self.candidate}`", ""]
        for group, sites in self.failing_sites.items():
            lines.append(f"- **{group}**: failing sites {', '.join(sites)}")
        if self.failing_sites:
            lines.append("")
        lines += ["| group | check | value | limit | |", "|---|---|---|---|---|"]
        for c in self.checks:
            value = f"{c.value:.3f}" if isinstance(c.value, float) else c.value
            lines.append(f"| {c.group or '(run)'} | {c.name} | {value} | {c.limit} | {'ok' if c.passed else '**FAIL**'} |")
        for g in self.groups:
            if g.drifting:
                lines += ["", f"## drifting sites: {g.group} ({g.metric}; {'paired' if g.paired else 'unpaired'})", "",
                          "| variant | baseline | candidate | drift | 95% CI | adjusted p |", "|---|---|---|---|---|---|"]
                lines += [f"| {d['variant']} | {d['baseline']:.4g} | {d['candidate']:.4g} | {d['drift']:.4g} | "
                          f"[{d['ci_low']:.4g}, {d['ci_high']:.4g}] | {d['p_adjusted']:.3g} |" for d in g.drifting]
        return "\n".join(lines) + "\n"


def _strength(group: GroupRanking) -> dict[str, float]:
    return {v.variant: group.rule.sign * v.effect for v in group.variants}


def noise_signature(run: Run) -> dict:
    """What fixes a run's random numbers besides its prompts and seeds: the latent shape and causal
    tracing's noise settings (its job.yaml and manifest). Runs with different signatures are unpaired."""
    job = {}
    job_file = run.path / "job.yaml"
    if job_file.is_file():
        job = yaml.safe_load(job_file.read_text(encoding="utf-8")) or {}
    generation = run.manifest.get("generation") or {}
    keys = ("noise_scale", "noise_std", "noise_seed", "noise_draws") if run.method == "causal_trace" else ()
    return {"height": generation.get("height"), "width": generation.get("width"), **{k: job.get(k) for k in keys}}


def paired_draws(base: GroupRanking, cand: GroupRanking) -> tuple[dict, dict] | None:
    """The two runs' bootstrap draws when their rows share prompts, seeds and noise draws (`keys`) and
    were resampled alike (same prompts, count and RNG seed): draw b of both runs then weighs the same
    prompts and their difference is a paired resample."""
    rb, rc = base.extra.get("resamples"), cand.extra.get("resamples")
    if not rb or not rc or any(rb[k] != rc[k] for k in ("prompts", "keys", "n_boot", "seed")):
        return None
    return rb["draws"], rc["draws"]


def _unpaired(base: GroupRanking, cand: GroupRanking) -> tuple[dict, dict]:
    """Independent resamples of the two runs: the candidate's draws in a fixed shuffled order, so draw b of
    one run is unrelated to draw b of the other (both runs were resampled with the same RNG seed)."""
    rb, rc = base.extra["resamples"], cand.extra["resamples"]
    rng = np.random.default_rng(12345)
    order = rng.permutation(rc["n_boot"])
    n = min(rb["n_boot"], rc["n_boot"])
    return ({k: v[:n] for k, v in rb["draws"].items()}, {k: v[order][:n] for k, v in rc["draws"].items()})


def drift_rows(base: GroupRanking, cand: GroupRanking, common: list[str], t: Thresholds, paired: bool,
               limit: float) -> list[dict]:
    """Sites whose effect moved: |drift| > `limit` and the drift distinguishable from 0 after `t.drift_correction`
    over the `common` sites (t over prompts on the drift's resamples, paired or not)."""
    b = {v.variant: v for v in base.variants}
    c = {v.variant: v for v in cand.variants}
    if not common:
        return []
    draws_b, draws_c = paired_draws(base, cand) if paired else _unpaired(base, cand)
    n = min(base.n_prompts, cand.n_prompts)
    diff = np.stack([draws_c[name] - draws_b[name] for name in common], axis=1)
    drift = np.array([c[name].effect - b[name].effect for name in common])
    adjusted = CORRECTIONS[t.drift_correction](two_sided_pvalues(diff, drift, n))
    alpha = (1 - LEVEL) / 2
    out = []
    for j, name in enumerate(common):
        if adjusted[j] < t.alpha and abs(drift[j]) > limit:
            out.append({"variant": name, "baseline": b[name].effect, "candidate": c[name].effect,
                        "drift": float(drift[j]), "ci_low": float(np.nanquantile(diff[:, j], alpha)),
                        "ci_high": float(np.nanquantile(diff[:, j], 1 - alpha)), "p_adjusted": float(adjusted[j]),
                        "interval": "paired" if paired else "unpaired"})
    return out


def _agreement(x: list[float], y: list[float]) -> tuple[float | None, float | None]:
    if len(x) < 2:
        return None, None
    tau, rho = stats.kendalltau(x, y).statistic, stats.spearmanr(x, y).statistic
    return (1.0 if np.isnan(tau) and x == y else float(np.nan_to_num(tau)),
            1.0 if np.isnan(rho) and x == y else float(np.nan_to_num(rho)))


def _same_top(cand: GroupRanking, top_b: str, top_c: str, alpha: float) -> bool:
    """True unless, in the candidate run, the candidate's top is separated from the baseline's top: their
    difference (over the candidate's shared prompt resamples) is distinguishable from 0 (t over prompts; one
    comparison, so no multiplicity correction). Two tied layers may trade places; a moved layer may not."""
    if top_b == top_c or not top_b or not top_c:
        return True
    draws = cand.extra["resamples"]["draws"]
    effects = {v.variant: v.effect for v in cand.variants}
    if top_b not in draws:
        return False
    diff = (draws[top_c] - draws[top_b])[:, None]
    p = two_sided_pvalues(diff, np.array([effects[top_c] - effects[top_b]]), cand.n_prompts)[0]
    return not p < alpha


def compare_groups(base: GroupRanking, cand: GroupRanking, t: Thresholds, paired: bool) -> GroupComparison:
    sb, sc = _strength(base), _strength(cand)
    common = [v for v in sb if v in sc]
    with_effect = {v.variant for g in (base, cand) for v in g.variants if v.distinct}
    distinct = [v for v in common if v in with_effect]
    tau, rho = _agreement([sb[v] for v in distinct], [sc[v] for v in distinct])
    k = min(t.top_k, len(distinct))
    top_b = sorted(distinct, key=lambda v: -sb[v])[:k]
    top_c = sorted(distinct, key=lambda v: -sc[v])[:k]
    first_b = base.variants[0].variant if base.variants else ""
    first_c = cand.variants[0].variant if cand.variants else ""
    sel_b = {s for v in base.variants if v.selected for s in v.sites}
    sel_c = {s for v in cand.variants if v.selected for s in v.sites}
    jaccard = len(sel_b & sel_c) / len(sel_b | sel_c) if sel_b | sel_c else 1.0
    scale = max([abs(v.effect) for v in (*base.variants, *cand.variants) if v.variant in common] + [0.0])
    limit = max(t.max_drift * scale, t.max_abs_drift)
    return GroupComparison(
        base.label, base.rule.metric, len(common), distinct, tau, rho, first_b, first_c,
        _same_top(cand, first_b, first_c, t.alpha), len(set(top_b) & set(top_c)) / k if k else 1.0, jaccard,
        paired, limit, drift_rows(base, cand, common, t, paired, limit))


def _value(x: float | None, n: int) -> float | str:
    return x if x is not None else f"n/a ({n} site{'s' if n != 1 else ''} with an effect)"


def group_checks(g: GroupComparison, t: Thresholds) -> list[Check]:
    n = len(g.distinct_sites)
    checks = [Check("kendall_tau", g.kendall_tau is None or g.kendall_tau >= t.min_kendall_tau, _value(g.kendall_tau, n),
                    t.min_kendall_tau, g.group),
              Check("spearman", g.spearman is None or g.spearman >= t.min_spearman, _value(g.spearman, n),
                    t.min_spearman, g.group),
              Check(f"top_{t.top_k}_overlap", g.top_k_overlap >= t.min_top_k_overlap, g.top_k_overlap,
                    t.min_top_k_overlap, g.group),
              Check("drifting_sites", len(g.drifting) <= t.max_drifting_sites,
                    f"{len(g.drifting)}" + (f": {', '.join(d['variant'] for d in g.drifting)}" if g.drifting else ""),
                    t.max_drifting_sites, g.group)]
    if t.require_same_top:
        checks.append(Check("same top variant", g.same_top, f"{g.top_baseline} → {g.top_candidate}",
                            "same, or not separated", g.group))
    return checks


def count_failures(run: Run) -> int:
    import pyarrow.parquet as pq

    failed = sum(pq.read_metadata(p).num_rows for p in run.failure_files())
    return failed + (1 if run.manifest.get("status") not in (None, "complete") and not failed else 0)


def regress(baseline: str | Path, candidate: str | Path, thresholds: Thresholds, n_boot: int = N_BOOT) -> Verdict:
    base_run, cand_run = open_run(baseline), open_run(candidate)
    for run in (base_run, cand_run):
        require_results(run)
    if base_run.method != cand_run.method:
        raise AnalysisError(f"--candidate: run '{cand_run.path}' is a {cand_run.method} run, the baseline a "
                            f"{base_run.method} run; compare runs of the same job")
    base_groups = {g.label: g for g in rank_run(base_run, n_boot=n_boot, by_concept=False)}
    cand_groups = {g.label: g for g in rank_run(cand_run, n_boot=n_boot, by_concept=False)}
    same_noise = noise_signature(base_run) == noise_signature(cand_run)
    checks, groups = [], []
    for label, base in base_groups.items():
        cand = cand_groups.get(label)
        if cand is None:
            checks.append(Check("attribute present", False, "missing", "present", label))
            continue
        few = next((r for r in (base, cand) if r.n_prompts < 2), None)
        if few is not None:
            raise too_few_prompts(label, few.run, few.n_prompts)
        g = compare_groups(base, cand, thresholds, same_noise and paired_draws(base, cand) is not None)
        groups.append(g)
        checks += group_checks(g, thresholds)
    new_failures = max(0, count_failures(cand_run) - count_failures(base_run))
    checks.append(Check("new_failures", new_failures <= thresholds.max_new_failures, new_failures,
                        thresholds.max_new_failures))
    return Verdict(str(base_run.path), str(cand_run.path), all(c.passed for c in checks), checks, groups, new_failures)


def too_few_prompts(attribute: str, run: str, n: int) -> AnalysisError:
    return AnalysisError(f"regress: attribute '{attribute}' of run '{run}' has {n} prompt: no interval, nothing to "
                         "compare a checkpoint by; give the job at least 2 prompts per attribute (10 for "
                         "trustworthy intervals)")


def check_enough_prompts(run: Run) -> None:
    """Refuse a baseline with an attribute of one prompt before a candidate sweep is spent on it."""
    import duckdb

    require_results(run)
    counts = duckdb.connect().execute(
        "SELECT coalesce(attribute, ''), count(DISTINCT prompt) FROM read_parquet($g, hive_partitioning = true, "
        "union_by_name = true) GROUP BY 1 ORDER BY 1", {"g": run.results_glob}).fetchall()
    for attribute, n in counts:
        if n < 2:
            raise too_few_prompts(attribute, run.name, n)


def run_candidate_model(baseline: str | Path, model: str, out: str | Path | None, local: bool = False) -> Path:
    """Run the baseline's job (its job.yaml) on `model` through the sweep API; returns the run directory."""
    from harness.jobs import load_job
    from harness.sweep import run_sweep

    base = open_run(baseline)
    job_file = base.path / "job.yaml"
    if not job_file.is_file():
        raise AnalysisError(f"--baseline: '{base.path}' has no job.yaml to re-run on the candidate model")
    data = yaml.safe_load(job_file.read_text(encoding="utf-8"))
    job = load_job({**data, "model": model, "name": f"{data.get('name', 'job')}-candidate"}, base_dir=base.path)
    out = Path(out) if out else base.path.with_name(base.path.name + "-candidate")
    summary = run_sweep(job, out=out, backend="local" if local else None, force=True)
    return summary.run_dir
