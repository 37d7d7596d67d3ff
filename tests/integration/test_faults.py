"""Faults a long sweep meets, each ending in one line with finished work kept (issue #20):

* the only node of the private Ray dies (an OOM kill of the raylet) → the sweep ends within seconds,
  exit 3, manifest ``stopped``, finished parts kept, no Ray process left;
* the disk fills up (a size-limited tmpfs in a private mount namespace) → one line naming the directory
  and the space needed, exit 3, manifest ``stopped``, nothing half-written counted done, and a rerun with
  room completes with every row once;
* a mistake only a worker can find (an unknown site) on Ray → one line, no Ray traceback, and the run
  directory it would have made is not there;
* the private Ray listens on 127.0.0.1 only (every socket of every process it starts).

The CLI runs in a subprocess, as a terminal would run it. SIGTERM and Ctrl-C are in test_interrupt.py,
a joined cluster losing its only worker node in test_ray_cluster.py.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.integration.test_interrupt import processes_with, wait_for

CLI = "import sys; from harness.cli import main; sys.exit(main())"
SMALL = {"name": "faults", "model": "tiny:sd15", "method": "locogen", "steps": 2, "height": 32, "width": 32,
         "metrics": ["mse"], "sites": {"kind": "cross_attn", "index": "14-15"},
         "prompts": [{"prompt": f"a house number {i}", "target": "a painting"} for i in range(6)]}
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def start_cli(args: list[str], marker: str, **kw) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "LOCO_TEST_MARKER": marker}
    return subprocess.Popen([sys.executable, "-c", CLI, *args], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, **kw)


def test_the_private_rays_only_node_dying_ends_the_sweep_within_seconds(tmp_path):
    import psutil

    job = {**SMALL, "steps": 20, "executor": {"workers": 1}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    out, marker = tmp_path / "run", f"LOCO_TEST_{uuid.uuid4().hex}"
    proc = start_cli(["sweep", str(tmp_path / "job.yaml"), "--out", str(out), "--quiet"], marker)
    try:
        assert wait_for(lambda: any(out.glob("results/*/part-*.parquet")) or proc.poll() is not None, 400)
        assert proc.poll() is None, f"the sweep ended before its node could be killed: {proc.communicate()}"
        raylets = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "raylet"]
        assert raylets, "the private Ray's raylet is a child of the sweep"
        killed = time.monotonic()
        for raylet in raylets:
            raylet.kill()  # as the OOM killer would
        _, err = proc.communicate(timeout=120)
        waited = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    assert proc.returncode == 3, err
    assert err.strip().count("\n") == 0 and err.startswith("loco: stopped: the private Ray's node died"), err
    assert waited < 60, f"{waited:.0f} s after the node died"  # measured: ~8 s on 2 loaded cores
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "stopped"
    assert len(list(out.glob("results/*/part-*.parquet"))) >= 1
    assert wait_for(lambda: not processes_with(marker), 30), f"left behind: {processes_with(marker)}"


def test_an_error_only_a_worker_finds_is_one_line_on_ray_and_leaves_no_run_directory(tmp_path):
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({**SMALL, "sites": "cross_attn#99"}))
    out, marker = tmp_path / "run", f"LOCO_TEST_{uuid.uuid4().hex}"
    proc = start_cli(["sweep", str(tmp_path / "job.yaml"), "--out", str(out), "--quiet"], marker)
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 2
    assert err.splitlines() == ["loco: error: sites.names: no site matches 'cross_attn#99'"], err
    assert not out.exists()
    assert wait_for(lambda: not processes_with(marker), 30), f"left behind: {processes_with(marker)}"


def mount_namespace() -> list[str] | None:
    """A command prefix that runs in a private mount namespace where this user may mount a tmpfs (root:
    `unshare --mount`; else a user namespace), or None where neither is allowed."""
    if not shutil.which("unshare"):
        return None
    for prefix in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                                "mount -t tmpfs -o size=64k tmpfs \"$TMPDIR\""], capture_output=True,
                               env={**os.environ, "TMPDIR": "/tmp"})
        if probe.returncode == 0:
            return prefix
    return None


DISK_FULL = textwrap.dedent("""
    import json, subprocess, sys
    from pathlib import Path
    disk, job, cli = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], check=True)
    def sweep():
        done = subprocess.run([sys.executable, "-c", cli, "sweep", job, "--out", str(disk / "run"), "--local",
                               "--quiet"], capture_output=True, text=True)
        run = disk / "run"
        parts = sorted(p.name for p in run.glob("results/*/*"))
        return {"rc": done.returncode, "err": done.stderr, "parts": parts,
                "left": sorted(p.name for p in run.rglob(".tmp-*")),
                "status": json.loads((run / "manifest.json").read_text())["status"]}
    full = sweep()
    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
    again = sweep()
    import duckdb
    ids = [r[0] for r in duckdb.sql(f"SELECT row_id FROM read_parquet('{disk}/run/results/**/*.parquet')").fetchall()]
    print(json.dumps({"full": full, "again": again, "rows": len(ids), "unique": len(set(ids))}))
""")


def test_a_full_disk_stops_the_sweep_in_one_line_and_a_rerun_with_room_completes(tmp_path):
    prefix = mount_namespace()
    if prefix is None:
        pytest.skip("no mount namespace here to size-limit a directory (needs root or user namespaces)")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(SMALL))
    (tmp_path / "disk").mkdir()
    (tmp_path / "check.py").write_text(DISK_FULL)
    done = subprocess.run([*prefix, sys.executable, str(tmp_path / "check.py"), str(tmp_path / "disk"),
                           str(tmp_path / "job.yaml"), CLI], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    full = result["full"]
    assert full["rc"] == 3, full
    assert full["err"].count("\n") == 1 and full["err"].startswith("loco: stopped: no space left on device writing "), full
    assert " free in " in full["err"] and "needs about" in full["err"]
    assert full["status"] == "stopped" and full["left"] == []  # no temporary file left behind
    assert all(name.endswith(".parquet") for name in full["parts"]) and len(full["parts"]) < 6
    assert result["again"]["rc"] == 0 and result["again"]["status"] == "complete", result["again"]
    assert result["rows"] == result["unique"] == 6 * 4  # each row once: 2 variants + control + target


def listening(pids: set[int]) -> list[tuple[str, str]]:
    import psutil

    found = []
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((psutil.Process(pid).name(), conn.laddr.ip))
        except psutil.Error:
            continue
    return found


LISTENERS = textwrap.dedent("""
    import json, os, time, psutil, ray
    from harness.run.ray_session import init_ray
    assert init_ray(None)
    @ray.remote
    class Echo:
        def pid(self):
            return os.getpid()
    ray.get(Echo.remote().pid.remote())
    time.sleep(3)  # the agents start beside the raylet
    me = psutil.Process()
    print(json.dumps(sorted({me.pid, *(p.pid for p in me.children(recursive=True))})))
    input()
    ray.shutdown()
""")


def test_the_private_ray_listens_on_loopback_only(tmp_path):
    (tmp_path / "listeners.py").write_text(LISTENERS)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "listeners.py")], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pids = set(json.loads(proc.stdout.readline()))
        sockets = listening(pids)
    finally:
        proc.communicate("\n", timeout=120)
    names = {name for name, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets  # the check sees Ray's servers
    assert all(ip in LOOPBACK for _, ip in sockets), [s for s in sockets if s[1] not in LOOPBACK]


def test_rows_of_a_rerun_after_a_stop_are_each_written_once(tmp_path):
    """The resume half of the node-death promise, cheaply: a run stopped after some units resumes them."""
    from harness.jobs import load_job
    from harness.sweep import run_sweep

    job = load_job({**SMALL, "prompts": SMALL["prompts"][:2]})
    first = run_sweep(job, out=tmp_path / "run", backend="local")
    next(iter((tmp_path / "run").glob("results/*/part-*.parquet"))).unlink()
    again = run_sweep(job, out=tmp_path / "run", backend="local")
    assert (first.units_run, again.units_run, again.units_skipped) == (2, 1, 1)
    ids = [r[0] for r in duckdb.sql(f"SELECT row_id FROM read_parquet('{tmp_path}/run/results/**/*.parquet')").fetchall()]
    assert len(ids) == len(set(ids)) == 2 * 4
    assert Path(tmp_path / "run" / ".loco-lock").is_file()
