"""`loco plan`'s time estimate for the shipped tiny jobs is within 2× of their measured CPU time (issue #20
item 12). The measurements are bench/results/tiny_jobs.json (`uv run python bench/run_tiny_jobs.py`:
every unit of each job generated and scored on one thread, CPU seconds counted); this test recomputes
the plan's estimate from the current cost tables, so a change to either that breaks the 2× is caught."""

import json
from pathlib import Path

import pytest

from harness.jobs import load_job
from harness.preflight import plan

ROOT = Path(__file__).resolve().parents[2]
MEASURED = json.loads((ROOT / "bench" / "results" / "tiny_jobs.json").read_text())["jobs"]


def test_every_shipped_tiny_job_is_measured():
    shipped = {"harness/default_job.yaml", *(str(p.relative_to(ROOT)) for p in (ROOT / "jobs").glob("*tiny*.yaml"))}
    assert {m["job"] for m in MEASURED} == shipped


@pytest.mark.parametrize("measured", MEASURED, ids=[m["job"] for m in MEASURED])
def test_the_plans_cpu_estimate_is_within_2x_of_the_measured_cpu_time(measured):
    estimate = plan(load_job(ROOT / measured["job"])).cpu_seconds
    assert measured["cpu_seconds"] / 2 <= estimate <= measured["cpu_seconds"] * 2, (estimate, measured)
    assert plan(load_job(ROOT / measured["job"])).expected_rows == measured["rows"]
