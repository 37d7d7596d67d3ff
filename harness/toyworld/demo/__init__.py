"""`loco demo`: the whole flow of the harness on the toyworld model, in a few minutes on a laptop CPU.

The toyworld model (`harness.toyworld`) was trained on a world whose facts we know, so every step of the
flow can be checked by eye and by the attribute probes (`harness.metrics.probe`):

1. **localize** — three sweeps on one local Ray session, their jobs shipped beside this module:
   LocoGen (`locogen.yaml`, `objects.csv`) and causal tracing (`causal_trace.yaml`, `trace.csv`: 12
   prompts per attribute, so its threshold has a validation split) for colour, shape and background,
   attention patching for the rendered word (`attn_patch.yaml`, `words.csv`);
2. **rank** — each run per attribute under its paper's rule, read through the probes (`loco rank`),
   and the candidate layer sets of all three (`loco candidates`);
3. **edit** — LocoEdit makes "red" draw blue in the window LocoGen found for the concept red
   (`edit_red_blue.yaml`, `loco edit`), evaluated on red prompts (should turn blue), red prompts in
   other phrasings (should too) and the other colours (should not move; `edit_eval.csv`, `loco edit-eval
   --metrics probe`);
4. **report** — one HTML file of the three runs and the edit's evaluation (`loco report`).

`loco demo --model toyworld-dit` runs the same flow on the DiT organism (`dit/`: a PixArt-α transformer on
the same world) with four localizers on one prompt set (`dit/prompts.csv`) — LocoGen and attention patching
per block, causal tracing of every block and T5 layer, and attention contribution (Zarei et al.) — so their
rankings can be set side by side (the report's agreement table: Kendall τ, top-K overlap).

Every step is the verb itself, called through the verb registry (`harness.cli.registry.call_verb`), so
the demo exercises exactly what a user runs, and `harness` still never imports `analysis`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).parent


@dataclass(frozen=True)
class DemoJobs:
    """One organism's demo: its sweeps (run name → job file) and its edit, all in `folder`."""

    folder: Path
    sweeps: dict[str, str]
    edit: str = "edit_red_blue.yaml"

    def job(self, name: str) -> Path:
        return self.folder / self.sweeps[name]


DEMOS = {
    "toyworld": DemoJobs(HERE, {"locogen": "locogen.yaml", "causal-trace": "causal_trace.yaml",
                                "attn-patch": "attn_patch.yaml"}),
    "toyworld-dit": DemoJobs(HERE / "dit", {"locogen": "locogen.yaml", "causal-trace": "causal_trace.yaml",
                                            "attn-patch": "attn_patch.yaml", "attn-contrib": "attn_contrib.yaml"}),
}
SWEEPS = DEMOS["toyworld"].sweeps


def demo_jobs(model: str | None) -> tuple[DemoJobs, str | None]:
    """The demo an organism runs, and the `model:` override left for its jobs: a built-in organism's own
    jobs name it; any other model (a random one of the UNet organism's architecture, in tests) runs the
    UNet organism's jobs with `model:` replaced."""
    name = (model or "toyworld").removeprefix("builtin:")
    return (DEMOS[name], None) if name in DEMOS else (DEMOS["toyworld"], model)


@dataclass
class DemoResult:
    out: Path
    runs: dict[str, Path]
    candidates: Path
    edit: Path
    edit_eval: Path
    report: Path
    seconds: dict[str, float] = field(default_factory=dict)

    def edit_summary(self) -> dict:
        return json.loads((self.edit_eval / "summary.json").read_text())


def edit_spec(out: Path, candidates: Path, model: str | None, jobs: DemoJobs = DEMOS["toyworld"]) -> Path:
    """The shipped edit with `candidates:` pointing at this demo's file (and `model:` when overridden)."""
    spec = yaml.safe_load((jobs.folder / jobs.edit).read_text())
    spec["candidates"] = str(candidates.resolve())
    if model:
        spec["model"] = model
    path = out / "edit.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def summarize_candidates(path: Path) -> str:
    """One line per (method, attribute) set of a candidates file: its layers (or why it has none) and the
    top variant's evidence, with the prompts behind the interval."""
    data = yaml.safe_load(path.read_text())
    lines = [f"  {'method':<13} {'attribute':<11} {'layers':<26} effect of the first [95% CI], prompts   P(top)"]
    for s in data["sets"]:
        if s.get("concept"):
            continue  # per-concept sets are in the file; the summary shows each attribute's pooled set
        top = s["evidence"][0]
        layers = ", ".join(e["variant"] for e in s["evidence"] if e.get("selected")) or f"none ({s['status']})"
        ci = (f"[{top['ci_low']:+.3f}, {top['ci_high']:+.3f}]" if top.get("ci_low") is not None else "no interval")
        p_top = f"{top['p_top']:.2f}" if top.get("p_top") is not None else "—"
        lines.append(f"  {s['method']:<13} {s['attribute']:<11} {layers:<26} {top['effect']:+.3f} "
                     f"{ci} n={top['n_prompts']}   {p_top}")
    return "\n".join(lines)


def run_demo(out: str | Path, model: str | None = None, overrides: list[str] = (), seeds: str = "0-1",
             local: bool = False, log=print) -> DemoResult:
    """Run the four steps into `out` (replacing what an earlier demo left there). `model` replaces the
    jobs' ``model: toyworld`` (tests use a random model of the same architecture), `overrides` are
    ``KEY=VALUE`` job overrides for every sweep; `local` runs the sweeps in this process instead of Ray."""
    from harness.cli.registry import call_verb
    from harness.models import set_reproducible
    from harness.run.ray_pool import init_ray

    # The edit and its evaluation run in this process: batch-independent kernels and one thread, as the
    # sweep workers (two OpenMP threads on a shared 2-core CPU were 30x slower on the evaluation's small batches).
    set_reproducible(True)

    from harness.models.loading import locate

    if not (model or "toyworld").startswith(("tiny:", "random:")):
        locate(model or "toyworld")  # a missing model is one line before any Ray worker tries to load it
    jobs, model = demo_jobs(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sets = [*(f"--set={o}" for o in overrides), *([f"--set=model={model}"] if model else [])]
    seconds: dict[str, float] = {}
    runs = {name: out / "runs" / name for name in jobs.sweeps}
    # One private Ray session for the three sweeps. Ray runs its workers at nice 15 by default, which on a
    # busy machine starves a demo someone is waiting for; as Ray's own job supervisor does, run them at 0.
    os.environ.setdefault("RAY_worker_niceness", "0")
    started = False if local else init_ray(None)
    try:
        for name in jobs.sweeps:
            t0 = time.perf_counter()
            log(f"\n== {name}: loco sweep {jobs.job(name)}")
            # A fresh run: a sweep resumes finished units of the same job, and `model: toyworld` names the
            # shipped weights, not their version, so new weights would otherwise reuse the old rows.
            shutil.rmtree(runs[name], ignore_errors=True)
            status = call_verb("sweep", [str(jobs.job(name)), "--out", str(runs[name]), "--force", "--quiet",
                                         *sets, *(["--local"] if local else [])])
            if status:
                raise RuntimeError(f"loco demo: the {name} sweep failed (exit {status}); see {runs[name]}")
            seconds[f"sweep {name}"] = time.perf_counter() - t0
    finally:
        if started:
            import ray

            ray.shutdown()
    t0 = time.perf_counter()
    candidates = out / "candidates.yaml"
    log("\n== rank every attribute under its paper's rule, and the candidate sets: loco candidates")
    with (out / "rankings.txt").open("w") as rankings, contextlib.redirect_stderr(rankings):  # the full tables
        call_verb("candidates", [*(str(r) for r in runs.values()), "--out", str(candidates)])
    log(summarize_candidates(candidates) + f"\n(full rankings: {out / 'rankings.txt'})")
    seconds["rank + candidates"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    log(f"\n== edit: LocoEdit red → blue in the sites LocoGen found ({jobs.folder / jobs.edit})")
    call_verb("edit", [str(edit_spec(out, candidates, model, jobs)), "--out", str(out / "edit"), "--force"])
    call_verb("edit-eval", [str(out / "edit"), "--prompts", str(HERE / "edit_eval.csv"), "--out", str(out / "edit-eval"),
                            "--seeds", seeds, "--metrics", "probe", "--force"])
    seconds["edit + evaluation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = out / "report.html"
    call_verb("report", [*(str(r) for r in runs.values()), str(out / "edit-eval"), "--out", str(report)])
    seconds["report"] = time.perf_counter() - t0
    return DemoResult(out, runs, candidates, out / "edit", out / "edit-eval", report, seconds)
