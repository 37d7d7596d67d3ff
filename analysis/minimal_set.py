"""The greedy minimal layer set: the fewest layers whose joint intervention does most of the work.

A single-layer ranking says which layers matter one at a time; an edit touches a *set*. Following P3's
Table 5 (inject 1, 2, 3, 10, ... of the top layers and watch the effect saturate), the greedy set adds
layers in the order of their single-layer ranking: {1st}, {1st, 2nd}, ... up to `max_size`, next to the
set of every ranked layer (the all-layer effect). The harness plans that follow-up sweep itself — one
variant per set, through the job key `site_sets` — runs it, ranks it under the same paper rule, and
picks the smallest set whose effect reaches `fraction` of the all-layer effect. The sets' effects come
with their cluster-bootstrap intervals, and the choice is written into the candidates file
(`minimal: {sites, size, effect, all_layer_effect, fraction, run}`).

Joint interventions are K/V swaps (LocoGen, attention patching); causal tracing restores one state at a
time, so its runs are refused here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from analysis.candidates import CandidatesFile
from analysis.effects import GroupRanking, rank_run
from analysis.intervals import N_BOOT
from analysis.runs import AnalysisError, Run

SWAP_METHODS = ("locogen", "attn_patch")


def greedy_sets(group: GroupRanking, max_size: int) -> list[tuple[str, ...]]:
    """Prefixes of the ranked sites (unique, in rank order) up to `max_size`, then the all-layer set."""
    order: list[str] = []
    for v in group.variants:
        for site in v.sites or ([v.site] if v.site else []):
            if site not in order:
                order.append(site)
    sets = [tuple(order[:k]) for k in range(1, min(max_size, len(order)) + 1)]
    if tuple(order) not in sets:
        sets.append(tuple(order))
    return sets


def follow_up_job(run: Run, sets: list[tuple[str, ...]], name: str) -> dict:
    """The run's own job with one variant per site set (every other setting unchanged)."""
    job_file = run.path / "job.yaml"
    if not job_file.is_file():
        raise AnalysisError(f"--minimal-set: '{run.path}' has no job.yaml to plan the follow-up sweep from")
    data = yaml.safe_load(job_file.read_text(encoding="utf-8"))
    data.update(name=name, site_sets=[list(s) for s in sets], window=1, sites=None)
    steps = data.get("step_start")
    if isinstance(steps, list) and len(steps) > 1:
        data["step_start"] = [min(steps)]
    return data


def choose(group: GroupRanking, fraction: float) -> dict:
    """The smallest set reaching `fraction` of the all-layer effect (strength in the rule's direction)."""
    by_size = sorted(group.variants, key=lambda v: (len(v.sites), v.variant))
    full = by_size[-1]
    target = fraction * group.rule.sign * full.effect
    chosen = next((v for v in by_size if group.rule.sign * v.effect >= target), full)
    return {"sites": chosen.sites, "size": len(chosen.sites), "effect": chosen.effect, "ci_low": chosen.ci_low,
            "ci_high": chosen.ci_high, "all_layer_effect": full.effect, "all_layer_size": len(full.sites),
            "fraction": fraction, "reached": bool(group.rule.sign * chosen.effect >= target),
            "curve": [{"size": len(v.sites), "effect": v.effect, "ci_low": v.ci_low, "ci_high": v.ci_high}
                      for v in by_size]}


def find_minimal_sets(candidates: CandidatesFile, runs: list[Run], fraction: float = 0.9, max_size: int = 8,
                      out: str | Path | None = None, local: bool = False, n_boot: int = N_BOOT) -> CandidatesFile:
    """Plan, run and evaluate the follow-up sweep of each run; attach `minimal` to each candidate set."""
    from harness.jobs import load_job
    from harness.sweep import run_sweep

    if not 0 < fraction <= 1:
        raise AnalysisError(f"--fraction: expected a share in (0, 1], got {fraction}")
    if max_size < 1:
        raise AnalysisError(f"--max-size: expected at least 1 layer, got {max_size}")
    wrong = [r for r in runs if r.method not in SWAP_METHODS]
    if wrong:
        raise AnalysisError(f"--minimal-set: '{wrong[0].path}' is a {wrong[0].method} run; joint interventions are "
                            f"planned for {' and '.join(SWAP_METHODS)} runs")
    sets_out = [s.model_copy() for s in candidates.sets]
    for run in runs:
        groups = [g for g in rank_run(run, n_boot=n_boot) if not g.concept]
        sets = list(dict.fromkeys(s for g in groups for s in greedy_sets(g, max_size)))
        target_dir = Path(out) if out and len(runs) == 1 else run.path.with_name(run.path.name + "-minimal")
        job = load_job(follow_up_job(run, sets, target_dir.name))
        summary = run_sweep(job, out=target_dir, backend="local" if local else None, force=True)
        from analysis.runs import open_run

        follow = {g.attribute: g for g in rank_run(open_run(summary.run_dir), n_boot=n_boot, by_concept=False)}
        for s in sets_out:
            group = follow.get(s.attribute or "")
            if group is not None and s.method == run.method:
                s.minimal = choose(group, fraction) | {"run": str(summary.run_dir)}
    return candidates.model_copy(update={"sets": sets_out})
