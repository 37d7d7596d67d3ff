"""Sweep throughput on Ray with 1 and 2 workers, and the Ray path's overhead against the same units run in
this process — one run, so the ratios compare like with like.

    uv run python bench/run_sweep.py [--repeats 2] [--out bench/results/sweep.json]

Workload: LocoGen m=1 over the 16 cross-attention layers of tiny SD1.x, 4 prompts × 1 seed, one prompt per
unit (4 units of 18 images: 16 variants + control + target). Three ways over the same units:
  local     a warm `Worker` in this process, units one after another
  ray-1     the Ray pool (`harness.run.pool`) with 1 warm worker actor (model loaded before timing)
  ray-2     the same with 2 warm worker actors pulling from one queue
and `loco sweep` end to end (`run_sweep`: private Ray started, actors load the model, parts written, Ray
stopped) with 1 and 2 workers, which is what a user waits for. Medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import median_seconds  # noqa: E402
from harness.cli import quiet  # noqa: E402
from harness.jobs import load_job  # noqa: E402
from harness.results import provenance  # noqa: E402
from harness.run.plan import plan_units  # noqa: E402
from harness.run.pool import ActorPool  # noqa: E402
from harness.run.ray_pool import init_ray, ray_workers, run_ray  # noqa: E402
from harness.run.worker import Worker  # noqa: E402
from harness.sweep import run_sweep  # noqa: E402

PROMPTS = ["a house in the style of van gogh", "a cat in the style of monet",
           "a portrait in the style of salvador dali", "a photo of r2d2 in a street"]


def job(workers: int):
    return load_job({"name": "bench-sweep", "model": "tiny:sd15", "method": "locogen", "seeds": [0],
                     "prompts": [{"prompt": p, "target": "a painting"} for p in PROMPTS],
                     "executor": {"workers": workers, "prompts_per_unit": 1}})



def raise_failure(failure) -> None:
    raise RuntimeError(f"unit {failure.unit_id} failed: {failure.error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="bench/results/sweep.json")
    args = parser.parse_args()
    quiet()
    spec = job(1)
    worker = Worker(spec, threads=1)  # one intra-op thread, as each Ray worker on CPU has
    units = plan_units(spec, worker.variants)
    images = sum(len(u.prompt_indices) * (len(u.variant_indices) + 2) for u in units)
    worker.run_unit(units[0])  # warm-up
    seconds = {"local": median_seconds(lambda: [worker.run_unit(u) for u in units], args.repeats)}

    started = init_ray(None)
    for n in (1, 2):
        spawn, count = ray_workers(job(n))
        pool = ActorPool(spawn, count, lambda actor, unit: actor.run_unit.remote(unit), retries=0)
        pool.wait_ready()
        run_ray(spec, units[:1], pool, None, lambda r: None, raise_failure)  # warm-up
        seconds[f"ray_{n}"] = median_seconds(lambda pool=pool: run_ray(spec, units, pool, None, lambda r: None,
                                                             raise_failure), args.repeats)
        pool.shutdown()
    if started:
        import ray

        ray.shutdown()
    for n in (1, 2):  # end to end, cold: a private Ray, model loads, parts written
        def sweep(n=n):
            with tempfile.TemporaryDirectory() as out:
                run_sweep(job(n), out=Path(out) / "run", quiet=True)
        seconds[f"sweep_{n}"] = median_seconds(sweep, 1)

    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.processor() or
        platform.machine(), "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
        "units": len(units), "images": images, "repeats": args.repeats, **provenance.versions(),
        "seconds": seconds, "img_s": {k: images / v for k, v in seconds.items()},
        "ray_1_overhead_vs_local": seconds["ray_1"] / seconds["local"],
        "ray_2_speedup_vs_ray_1": seconds["ray_1"] / seconds["ray_2"],
        "sweep_2_speedup_vs_sweep_1": seconds["sweep_1"] / seconds["sweep_2"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print("| way | seconds | img/s |\n|---|---|---|")
    for key, value in seconds.items():
        print(f"| {key} | {value:.2f} | {images / value:.2f} |")
    print(f"Ray (1 worker) / in-process: {report['ray_1_overhead_vs_local']:.2f}×; 2 workers vs 1: "
          f"{report['ray_2_speedup_vs_ray_1']:.2f}× warm, {report['sweep_2_speedup_vs_sweep_1']:.2f}× end to end; "
          f"load average {report['load_average_1m']:.1f} on {report['cpus']} cores")


if __name__ == "__main__":
    main()
