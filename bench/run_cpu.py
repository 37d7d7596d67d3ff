"""CPU benchmark: the same localization work three ways, in one process and one run.

    uv run python bench/run_cpu.py [--repeats 3] [--out bench/results/cpu.json]
    uv run python bench/run_cpu.py --only dit --repeats 1 --out bench/results/cpu_dit.json

Workloads (tiny models, CPU):
  locogen        LocoGen m=1 over all 16 cross-attention layers of tiny SD1.x, 4 prompts
  patching       P3 cached patching, step_start=2, all 24 joint blocks of tiny SD3, 3 SimpleBench pairs
  causal_trace   P1 causal trace over the 16 cross-attention layers of tiny SD1.x, 3 prompts
  flux_patching  (group `dit`) block-by-block K/V patching of the text tokens over all 57 blocks of tiny
                 FLUX.1-dev (19 dual-stream joint attentions, 38 single-stream text slices), the clean prompt
                 into the styled one, 2 prompts, 4 steps; the reference is Zarei et al.'s loop structure
  pixart_locogen (group `dit`) LocoGen m=1 over the 28 cross-attention blocks of tiny PixArt-α, 2 prompts,
                 4 steps (the original prompt's caption-projected K/V and its padding mask outside the window)

A DiT workload is one line in `workloads()` (`dit(...)` of a LocoGen or patching workload on a tiny DiT).

Ways: the reference-style loop (bench/reference.py: one pipeline call per variant, batch 1, hooks), the
harness in-process (a warm `Worker`), the harness through Ray (warm actors, one per core, `run_ray`).
Images/s counts the images the reference loop makes (the science); the harness's extra reference rows
are part of its cost. Medians over repeats; the harness's images are checked against the reference's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import reference  # noqa: E402
from harness import generate  # noqa: E402
from harness.cli import quiet  # noqa: E402
from harness.jobs import load_job  # noqa: E402
from harness.models import load_model, set_reproducible  # noqa: E402
from harness.results import provenance  # noqa: E402
from harness.run.plan import plan_units  # noqa: E402
from harness.run.pool import ActorPool  # noqa: E402
from harness.run.ray_pool import init_ray, ray_workers, run_ray  # noqa: E402
from harness.run.worker import Worker  # noqa: E402
from harness.sites import TEXT_KINDS  # noqa: E402

STYLE = [("a house in the style of van gogh", "a house", "van gogh"),
         ("a cat in the style of monet", "a cat", "monet"),
         ("a portrait in the style of salvador dali", "a portrait", "salvador dali"),
         ("a photo of r2d2 in a street", "a photo of a robot in a street", "r2d2")]
SIGNS = [('A sign that says "assembly".', 'A sign that says "popular".'),
         ('A sign that says "program".', 'A sign that says "van".'),
         ('A sign that says "william".', 'A sign that says "notable".')]


def locogen_workload(model: str, prompts=STYLE, seed: int = 0, **job) -> dict:
    """P2's LocoGen (m=1) over every cross-attention layer, against LocoGen's own loop (`trace_attn_layer.py`)."""
    return dict(
        job={"model": model, "method": "locogen", "seeds": [seed],
             "prompts": [{"prompt": a, "target": b} for a, b, *_ in prompts], **job},
        reference=lambda ad, cfg: reference.locogen_loop(ad, [(a, b) for a, b, *_ in prompts], seed, cfg),
        roles=("control",))


def patching_workload(model: str, pairs, seed: int, step_start: int, method: str = "attn_patch", **job) -> dict:
    """K/V patching of the text tokens, one text-attention block at a time, prompt B's into prompt A's run,
    against the cached patching loop (P3's scripts; Zarei et al.'s block-by-block structure on FLUX)."""
    return dict(
        job={"model": model, "method": method, "step_start": step_start, "seeds": [seed],
             "prompts": [{"prompt": a, "target": b} for a, b, *_ in pairs], **job},
        reference=lambda ad, cfg: reference.patching_loop(ad, [(a, b) for a, b, *_ in pairs], seed, cfg,
                                                          step_start=step_start),
        roles=("target", "control"))


def dit(spec: dict) -> dict:
    """A diffusion-transformer workload (issue 18): selected together by `--only dit`."""
    return {**spec, "group": "dit"}


def workloads():
    """name → (job dict, reference function, the harness's reference rows in the loop's order[, group]).
    The reference loop makes, per prompt, those rows' images and one image per variant."""
    return {
        "locogen": locogen_workload("tiny:sd15"),
        "patching": patching_workload("tiny:sd3", SIGNS, 42, step_start=2),
        "causal_trace": dict(
            # the reference loop restores the cond half with the embedding matrix's σ: the job asks for the same
            job={"model": "tiny:sd15", "method": "causal_trace", "sites": {"kind": "cross_attn"}, "seeds": [0],
                 "branch": "cond", "noise_std": "embedding",
                 "prompts": [{"prompt": a, "target": b, "concept": c} for a, b, c in STYLE[:3]]},
            reference=lambda ad, cfg: reference.causal_trace_loop(ad, [(a, c) for a, _, c in STYLE[:3]], 0, cfg),
            roles=("control", "corrupted")),
        # Diffusion transformers at 4 steps (57 FLUX blocks make 59 images per prompt). Zarei et al.'s FLUX
        # setting, block by block: the clean prompt's text K/V into the styled prompt's run (as
        # jobs/zarei_locogen_flux_style.yaml), no CFG batch.
        "flux_patching": dit(patching_workload("tiny:flux", STYLE[:2], 0, step_start=0, method="locogen", steps=4)),
        # PixArt-α's 28 attn2 blocks, LocoGen m=1 (58 images): K/V from the caption projection, the mask moved too.
        "pixart_locogen": dit(locogen_workload("tiny:pixart", STYLE[:2], steps=4)),
    }


def ordered_images(results, roles) -> list[np.ndarray]:
    """The harness's images in the reference loop's order: per prompt, references then variants."""
    out = []
    for result in results:
        rows = {r["row_id"]: r for r in result.rows}
        by_prompt: dict[str, list] = {}
        for r in result.rows:
            by_prompt.setdefault(r["prompt_id"], []).append(r)
        for prompt_rows in by_prompt.values():
            refs = [next(r for r in prompt_rows if r["role"] == role) for role in roles]
            variants = sorted((r for r in prompt_rows if r["role"] == "variant"), key=forward_order)
            out.extend(result.images[r["row_id"]] for r in [*refs, *variants] if r["row_id"] in rows)
    return out


def forward_order(row: dict) -> tuple[int, int]:
    """The reference loops' order of variants: by text-attention kind as `TEXT_KINDS` lists them (FLUX: the
    dual-stream blocks, then the single-stream ones), then by index."""
    kind = TEXT_KINDS.index(row["kind"]) if row["kind"] in TEXT_KINDS else -1
    return kind, row["site_index"]


def raise_failure(failure) -> None:
    raise RuntimeError(f"unit {failure.unit_id} failed: {failure.error}")


def timed(fn, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def run(name: str, spec: dict, repeats: int) -> dict:
    job = load_job({"name": f"bench-{name}", "save_images": True, "executor": {"prompts_per_unit": 1}, **spec["job"]})
    load_before = os.getloadavg()[0]  # the machine is shared: a busy one slows the ways unevenly
    set_reproducible(False)
    torch.set_num_threads(os.cpu_count())
    adapter = load_model(job.model)
    cfg = adapter.defaults.with_job(job)
    ref_seconds, ref_images = timed(lambda: spec["reference"](adapter, cfg), repeats)

    worker = Worker(job)
    science = len(job.prompts) * (len(spec["roles"]) + len(worker.variants))
    assert len(ref_images) == science, (len(ref_images), science)
    units = plan_units(job, worker.variants)
    worker.run_unit(units[0])  # warm-up
    local_seconds, results = timed(lambda: [worker.run_unit(u) for u in units], repeats)
    mine = ordered_images(results, spec["roles"])
    diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(mine, ref_images, strict=True))

    ablations = {}
    if max(job.step_start) > 0:  # the shared-prefix optimization only applies when step_start > 0
        generate.SHARE_PREFIX = False
        ablations["local_no_shared_prefix_s"], _ = timed(lambda: [worker.run_unit(u) for u in units], repeats)
        generate.SHARE_PREFIX = True

    fast = Worker(load_job({**job.model_dump(mode="json"), "reproducible": False}))
    torch.set_num_threads(os.cpu_count())
    fast.run_unit(units[0])
    fast_seconds, _ = timed(lambda: [fast.run_unit(u) for u in units], repeats)

    init_ray(None)
    spawn, count = ray_workers(job)
    pool = ActorPool(spawn, count, lambda actor, unit: actor.run_unit.remote(unit), retries=0)
    pool.wait_ready()
    ray_seconds, _ = timed(lambda: run_ray(job, units, pool, None, lambda r: None, raise_failure), repeats)
    pool.shutdown()
    return {
        "workload": name, "model": job.model, "science_images": science,
        "harness_rows": sum(len(r.rows) for r in results),
        "reference_s": ref_seconds, "local_s": local_seconds, "local_fast_kernels_s": fast_seconds,
        "ray_s": ray_seconds, "ray_workers": count,
        "reference_img_s": science / ref_seconds, "local_img_s": science / local_seconds,
        "local_fast_kernels_img_s": science / fast_seconds, "ray_img_s": science / ray_seconds,
        "local_vs_reference": ref_seconds / local_seconds, "ray_vs_reference": ref_seconds / ray_seconds,
        "max_pixel_diff_vs_reference": diff, "load_average_before_after": [load_before, os.getloadavg()[0]],
        **ablations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="workloads or groups (dit) to run (default: all)")
    parser.add_argument("--out", default="bench/results/cpu.json")
    args = parser.parse_args()
    quiet()
    rows = [run(name, spec, args.repeats) for name, spec in workloads().items()
            if not args.only or name in args.only or spec.get("group") in args.only]
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": platform.processor()
              or platform.machine(), "cores": os.cpu_count(), "repeats": args.repeats, **provenance.versions(),
              "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    for r in rows:
        if "local_no_shared_prefix_s" in r:
            print(f"{r['workload']}: shared prefix on {r['local_s']:.2f} s, off {r['local_no_shared_prefix_s']:.2f} s "
                  f"({r['local_no_shared_prefix_s'] / r['local_s']:.2f}×)")
    print("| workload | reference img/s | harness in-process img/s (ratio) | in-process, fast kernels | "
          "harness via Ray img/s (ratio) | max pixel diff |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} ({r['model']}, {r['science_images']} images) | {r['reference_img_s']:.2f} | "
              f"{r['local_img_s']:.2f} ({r['local_vs_reference']:.2f}×) | {r['local_fast_kernels_img_s']:.2f} | "
              f"{r['ray_img_s']:.2f} ({r['ray_vs_reference']:.2f}×, {r['ray_workers']} actors) | "
              f"{r['max_pixel_diff_vs_reference']} |")


if __name__ == "__main__":
    main()
