"""`loco regress`: does a new checkpoint keep its knowledge where the last one did?

Two runs of the same job (a baseline and a candidate: the same job on a new checkpoint, or a re-run) are
ranked under the same paper rules (`analysis.effects`), attribute by attribute, and compared:

* rank agreement of the layer rankings over the variants both runs have: Kendall τ and Spearman ρ of
  the effect strengths;
* overlap of the candidate sets (the selected sites) and of the top-k variants;
* per-site effect drift (candidate − baseline) with an interval from both runs' bootstrap resamples;
  a site drifts when its interval excludes 0 and the drift exceeds `max_abs_drift`;
* new failures: failed units in the candidate's `failures/` records, or a candidate run that stopped.

The thresholds live in a regression file (YAML, `Thresholds`; example `jobs/regression/thresholds.yaml`). Exit
status: 0 = every check passes, 1 = a regression, 2 = a usage error. Reports: Markdown and JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import stats

from analysis.effects import GroupRanking, rank_run
from analysis.runs import AnalysisError, Run, open_run, require_results


class Thresholds(BaseModel):
    """What counts as a regression (every key optional; these are the defaults)."""

    model_config = ConfigDict(extra="forbid")
    min_kendall_tau: float = Field(0.5, ge=-1, le=1)  # rank agreement of the layer rankings
    min_spearman: float = Field(0.6, ge=-1, le=1)
    top_k: int = Field(3, ge=1)  # k of the top-k overlap
    min_top_k_overlap: float = Field(0.66, ge=0, le=1)  # share of the baseline's top k still in the candidate's
    require_same_top: bool = True  # the strongest variant must stay the strongest
    max_abs_drift: float = Field(0.0, ge=0)  # drift below this is never flagged (effect units)
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
    kendall_tau: float
    spearman: float
    top_baseline: str
    top_candidate: str
    top_k_overlap: float
    set_jaccard: float
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

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"verdict": "pass" if self.passed else "regression"}, indent=2, default=float)

    def to_markdown(self) -> str:
        lines = [f"# loco regress: {'PASS' if self.passed else 'REGRESSION'}", "",
                 f"baseline `{self.baseline}` · candidate `{self.candidate}`", "",
                 "| group | check | value | limit | |", "|---|---|---|---|---|"]
        for c in self.checks:
            value = f"{c.value:.3f}" if isinstance(c.value, float) else c.value
            lines.append(f"| {c.group or '(run)'} | {c.name} | {value} | {c.limit} | {'ok' if c.passed else '**FAIL**'} |")
        for g in self.groups:
            if g.drifting:
                lines += ["", f"## drifting sites: {g.group} ({g.metric})", "",
                          "| variant | baseline | candidate | drift | 95% CI |", "|---|---|---|---|---|"]
                lines += [f"| {d['variant']} | {d['baseline']:.4g} | {d['candidate']:.4g} | {d['drift']:.4g} | "
                          f"[{d['ci_low']:.4g}, {d['ci_high']:.4g}] ({d['interval']}) |" for d in g.drifting]
        return "\n".join(lines) + "\n"


def _strength(group: GroupRanking) -> dict[str, float]:
    return {v.variant: group.rule.sign * v.effect for v in group.variants}


def _paired_draws(base: GroupRanking, cand: GroupRanking) -> tuple[dict, dict] | None:
    """The two runs' bootstrap draws when they were resampled alike (same prompts, seed and count), so
    that draw b of both runs weighs the same prompts and their difference is a paired resample."""
    rb, rc = base.extra.get("resamples"), cand.extra.get("resamples")
    if not rb or not rc or any(rb[k] != rc[k] for k in ("prompts", "n_boot", "seed")):
        return None
    return rb["draws"], rc["draws"]


def drift_rows(base: GroupRanking, cand: GroupRanking, common: list[str], limit: float, level: float = 0.95) -> list[dict]:
    """Sites whose effect moved: the interval of the difference excludes 0 and |drift| > limit.

    Runs of one job on two checkpoints share prompts, seeds and initial noise, so the drift is paired:
    its interval is the percentile interval of (candidate − baseline) over the same prompt resamples.
    Runs over different prompts fall back to independent samples (the two intervals' half-widths
    combined in quadrature, a normal approximation), and the row says which was used."""
    b = {v.variant: v for v in base.variants}
    c = {v.variant: v for v in cand.variants}
    paired = _paired_draws(base, cand)
    alpha = (1 - level) / 2
    out = []
    for name in common:
        drift = c[name].effect - b[name].effect
        if paired and name in paired[0] and name in paired[1]:
            diff = paired[1][name] - paired[0][name]
            low, high, how = float(np.nanquantile(diff, alpha)), float(np.nanquantile(diff, 1 - alpha)), "paired"
        else:
            half = np.hypot((b[name].ci_high - b[name].ci_low) / 2, (c[name].ci_high - c[name].ci_low) / 2)
            low, high, how = drift - half, drift + half, "independent"
        if (low > 0 or high < 0) and abs(drift) > limit:
            out.append({"variant": name, "baseline": b[name].effect, "candidate": c[name].effect, "drift": drift,
                        "ci_low": low, "ci_high": high, "interval": how})
    return out


def compare_groups(base: GroupRanking, cand: GroupRanking, t: Thresholds) -> GroupComparison:
    sb, sc = _strength(base), _strength(cand)
    common = [v for v in sb if v in sc]
    if len(common) >= 2:
        x, y = [sb[v] for v in common], [sc[v] for v in common]
        tau = stats.kendalltau(x, y).statistic
        rho = stats.spearmanr(x, y).statistic
        tau, rho = (1.0 if np.isnan(tau) and x == y else float(np.nan_to_num(tau)),
                    1.0 if np.isnan(rho) and x == y else float(np.nan_to_num(rho)))
    else:
        tau = rho = 1.0 if common else 0.0
    k = min(t.top_k, len(base.variants))
    top_b = [v.variant for v in base.variants[:k]]
    top_c = [v.variant for v in cand.variants[:k]]
    sel_b = {s for v in base.variants if v.selected for s in v.sites}
    sel_c = {s for v in cand.variants if v.selected for s in v.sites}
    jaccard = len(sel_b & sel_c) / len(sel_b | sel_c) if sel_b | sel_c else 1.0
    return GroupComparison(base.label, base.rule.metric, len(common), tau, rho, top_b[0] if top_b else "",
                           top_c[0] if top_c else "", len(set(top_b) & set(top_c)) / max(k, 1), jaccard,
                           drift_rows(base, cand, common, t.max_abs_drift))


def count_failures(run: Run) -> int:
    import pyarrow.parquet as pq

    failed = sum(pq.read_metadata(p).num_rows for p in run.failure_files())
    return failed + (1 if run.manifest.get("status") not in (None, "complete") and not failed else 0)


def regress(baseline: str | Path, candidate: str | Path, thresholds: Thresholds, n_boot: int = 1000) -> Verdict:
    base_run, cand_run = open_run(baseline), open_run(candidate)
    for run in (base_run, cand_run):
        require_results(run)
    if base_run.method != cand_run.method:
        raise AnalysisError(f"--candidate: run '{cand_run.path}' is a {cand_run.method} run, the baseline a "
                            f"{base_run.method} run; compare runs of the same job")
    base_groups = {g.label: g for g in rank_run(base_run, n_boot=n_boot, by_concept=False)}
    cand_groups = {g.label: g for g in rank_run(cand_run, n_boot=n_boot, by_concept=False)}
    checks, groups = [], []
    for label, base in base_groups.items():
        cand = cand_groups.get(label)
        if cand is None:
            checks.append(Check("attribute present", False, "missing", "present", label))
            continue
        g = compare_groups(base, cand, thresholds)
        groups.append(g)
        checks += [Check("kendall_tau", g.kendall_tau >= thresholds.min_kendall_tau, g.kendall_tau,
                         thresholds.min_kendall_tau, label),
                   Check("spearman", g.spearman >= thresholds.min_spearman, g.spearman, thresholds.min_spearman, label),
                   Check(f"top_{thresholds.top_k}_overlap", g.top_k_overlap >= thresholds.min_top_k_overlap,
                         g.top_k_overlap, thresholds.min_top_k_overlap, label),
                   Check("drifting_sites", len(g.drifting) <= thresholds.max_drifting_sites, len(g.drifting),
                         thresholds.max_drifting_sites, label)]
        if thresholds.require_same_top:
            checks.append(Check("same top variant", g.top_baseline == g.top_candidate,
                                f"{g.top_baseline} → {g.top_candidate}", "same", label))
    new_failures = max(0, count_failures(cand_run) - count_failures(base_run))
    checks.append(Check("new_failures", new_failures <= thresholds.max_new_failures, new_failures,
                        thresholds.max_new_failures))
    return Verdict(str(base_run.path), str(cand_run.path), all(c.passed for c in checks), checks, groups, new_failures)


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
