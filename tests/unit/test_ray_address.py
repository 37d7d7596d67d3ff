"""Which Ray a sweep uses: `--address` / `executor.address`, else RAY_ADDRESS, else a private one."""

from pathlib import Path

import harness.sweep
from harness.cli import main
from harness.jobs import load_job
from harness.run.ray_pool import ray_address
from harness.sweep import SweepSummary

JOB = {"name": "addr", "method": "locogen", "prompts": [{"prompt": "a cat", "target": "a dog"}]}


def test_the_job_address_wins_then_ray_address_then_a_private_ray(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert ray_address(load_job({**JOB, "executor": {"address": "auto"}})) == "auto"
    assert ray_address(load_job(JOB)) == "10.0.0.5:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    assert ray_address(load_job(JOB)) is None


def test_loco_sweep_address_sets_the_jobs_executor_address(monkeypatch, tmp_path, capsys):
    seen = []

    def fake_sweep(job, **kwargs):
        seen.append((job.executor.address, kwargs["quiet"]))
        return SweepSummary(Path(tmp_path), 1, 0, 1, 0, 0.0)

    monkeypatch.setattr(harness.sweep, "run_sweep", fake_sweep)
    main(["sweep", "--address", "auto", "--quiet", "--out", str(tmp_path)])
    assert seen == [("auto", True)]
