"""Scorer overlap benchmark: model-backed scoring inline vs in its own Ray actor beside generation.

    uv run python bench/run_scoring.py [--repeats 3]

LocoGen m=1 over all 16 cross-attention layers of tiny SD1.x, 4 prompts, metrics [mse, clip_score] (CLIP
ViT-B/32, random weights: the cost is the real model's). Both ways run one generation actor; "inline"
scores inside it after each unit, "overlapped" hands each unit to a scoring actor and generates the next
unit meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ray  # noqa: E402

from harness.cli import quiet  # noqa: E402
from harness.jobs import load_job  # noqa: E402
from harness.run.plan import plan_units  # noqa: E402
from harness.run.pool import ActorPool  # noqa: E402
from harness.run.ray_pool import RemoteWorker, init_ray, run_ray  # noqa: E402
from harness.run.scoring import ScoringWorker  # noqa: E402

PROMPTS = ["a house in the style of van gogh", "a cat in the style of monet", "a portrait by salvador dali",
           "a photo of r2d2 in a street"]


def raise_failure(failure) -> None:
    raise RuntimeError(f"unit {failure.unit_id} failed: {failure.error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/results/scoring.json")
    args = parser.parse_args()
    quiet()
    job = load_job({"name": "bench-scoring", "model": "tiny:sd15", "method": "locogen", "seeds": [0],
                    "prompts": [{"prompt": p, "target": "a painting"} for p in PROMPTS],
                    "metrics": ["mse", "clip_score"], "scorers": {"clip": {"allow_random": True}},
                    "executor": {"prompts_per_unit": 1}})
    init_ray(None)
    results = {}
    for name, overlapped in (("inline", False), ("overlapped", True)):
        worker = ray.remote(RemoteWorker).options(num_cpus=1)
        generator = ActorPool(lambda worker=worker, inline=not overlapped: worker.remote(job, 1, inline), 1,
                              lambda actor, unit: actor.run_unit.remote(unit), retries=0)
        scorer = ray.remote(ScoringWorker).options(num_cpus=1)
        scorers = ActorPool(lambda scorer=scorer: scorer.remote(job), 1, lambda actor, result: actor.score.remote(result),
                            retries=0, name="scorer") if overlapped else None
        variants = ray.get(generator.slots[0].actor.describe.remote())["variants"]
        for pool in (generator, scorers):
            if pool is not None:
                pool.wait_ready()
        units = plan_units(job, variants)
        run_ray(job, units[:1], generator, scorers, lambda r: None, raise_failure)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run_ray(job, units, generator, scorers, lambda r: None, raise_failure)
            times.append(time.perf_counter() - t0)
        results[name] = statistics.median(times)
        for pool in (generator, scorers):
            if pool is not None:
                pool.shutdown()
    images = len(PROMPTS) * 18
    report = {"images": images, **{f"{k}_s": v for k, v in results.items()},
              "speedup": results["inline"] / results["overlapped"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"inline {results['inline']:.2f} s ({images / results['inline']:.2f} img/s), overlapped "
          f"{results['overlapped']:.2f} s ({images / results['overlapped']:.2f} img/s): {report['speedup']:.2f}×")


if __name__ == "__main__":
    main()
