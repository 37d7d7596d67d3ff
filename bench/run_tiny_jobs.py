"""CPU time of every shipped tiny job's units, beside `loco plan`'s estimate of it.

    uv run python bench/run_tiny_jobs.py            # writes bench/results/tiny_jobs.json

Each job runs in this process on one thread (as a sweep worker does): the model is loaded first (not
timed), then every unit is generated and scored while the process's CPU time is counted. CPU time, not
wall time, so the number does not depend on what else the machine runs; on an idle machine a sweep's
units take about this long on one worker (half on two). `tests/unit/test_tiny_job_estimates.py` keeps
`loco plan`'s estimate within 2× of these measurements.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.cli import quiet  # noqa: E402

quiet()
TINY_JOBS = [ROOT / "harness" / "default_job.yaml", *sorted((ROOT / "jobs").glob("*tiny*.yaml"))]


def measure(path: Path) -> dict:
    from harness.jobs import load_job
    from harness.models import set_reproducible
    from harness.preflight import plan
    from harness.run.plan import plan_units
    from harness.run.worker import Worker

    set_reproducible(True)
    job = load_job(path)
    worker = Worker(job, threads=1)
    units = plan_units(job, worker.variants)
    cpu, wall = time.process_time(), time.perf_counter()
    rows = sum(len(worker.run_unit(unit).rows) for unit in units)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"job": str(path.relative_to(ROOT)), "rows": rows, "cpu_seconds": round(cpu, 1),
            "wall_seconds": round(wall, 1), "plan_cpu_seconds": plan(job).cpu_seconds,
            "load_average": round(os.getloadavg()[0], 1)}


def main() -> None:
    results = []
    for path in TINY_JOBS:
        results.append(measure(path))
        print(json.dumps(results[-1]), flush=True)
    out = ROOT / "bench" / "results" / "tiny_jobs.json"
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                               "jobs": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
