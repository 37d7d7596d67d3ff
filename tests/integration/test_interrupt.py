"""Ctrl-C or SIGTERM on `loco sweep` stops it cleanly: finished units kept, the manifest says stopped, no
Ray process of the private local cluster left behind, and the same command resumes to every row once.

Runs the real CLI in a subprocess on its own session, as a terminal would, and sends the signal to its
whole process group (a terminal's Ctrl-C reaches Ray's child processes too). Every process the sweep
starts inherits a marker in its environment, so leftovers are found without mistaking another user's
Ray for ours."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import pytest
import yaml

from harness.jobs import load_job
from harness.sweep import run_sweep

UNITS = 24  # seconds of work left after the first part: the signal lands mid-sweep, not in its shutdown
JOB = {"name": "interrupt", "model": "tiny:sd15", "method": "locogen", "steps": 4,
       "prompts": [{"prompt": f"a house number {i}", "target": "a painting"} for i in range(UNITS)],
       "sites": {"kind": "cross_attn", "index": "14-15"}, "executor": {"workers": 2}}


def processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def send(proc, how: str) -> None:
    """Ctrl-C reaches a terminal's whole process group; SIGTERM (`timeout`, Kubernetes, Slurm) the driver
    only, after Ray has replaced the handlers it found when it started."""
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_leaves_a_resumable_run_and_no_ray_processes(tmp_path, how):
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(JOB))
    out, marker = tmp_path / "run", f"LOCO_TEST_{uuid.uuid4().hex}"
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "LOCO_TEST_MARKER": marker}
    # as from a terminal: Ctrl-C raises KeyboardInterrupt (a shell's background job, CI's included, may start us
    # with SIGINT ignored, and a child inherits that)
    cli = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "from harness.cli import main; sys.exit(main())")
    proc = subprocess.Popen([sys.executable, "-c", cli, "sweep", str(tmp_path / "job.yaml"), "--out", str(out), "--quiet"],
                            env=env, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: any(out.glob("results/*/part-*.parquet")) or proc.poll() is not None, 400)
        assert proc.poll() is None, f"the sweep ended before it could be interrupted: {proc.communicate()}"
        send(proc, how)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.splitlines() == ["loco: interrupted; finished units are kept, run the same command again to resume"], err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "stopped"
    assert wait_for(lambda: not processes_with(marker), 30), f"left behind: {processes_with(marker)}"

    kept = len(list(out.glob("results/*/part-*.parquet")))
    again = run_sweep(load_job(JOB), out=out, backend="local")
    assert again.units_skipped == kept >= 1 and again.units_run == UNITS - kept
    ids = [r[0] for r in duckdb.sql(f"SELECT row_id FROM read_parquet('{out}/results/**/*.parquet')").fetchall()]
    assert len(ids) == len(set(ids)) == UNITS * 4  # 2 variants + control + target per prompt, each once


def test_an_interrupt_while_ray_shuts_down_after_the_last_unit_leaves_the_run_complete(tmp_path, monkeypatch):
    """Every unit finished; the signal lands while the backend closes (stopping a private Ray takes
    seconds). The run is whole, so its manifest says complete, not running, and the interrupt still ends
    the command."""
    import harness.sweep as sweep_module

    opened = sweep_module.open_backend

    def interrupted_on_close(*args, **kwargs):
        runner = opened(*args, **kwargs)
        close = runner.close

        def close_then_interrupt():
            close()
            raise KeyboardInterrupt

        runner.close = close_then_interrupt
        return runner

    monkeypatch.setattr(sweep_module, "open_backend", interrupted_on_close)
    job = load_job({**JOB, "prompts": JOB["prompts"][:1], "steps": 2})
    with pytest.raises(KeyboardInterrupt):
        run_sweep(job, out=tmp_path / "run", backend="local")
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "complete"
