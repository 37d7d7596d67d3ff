"""Whole sweeps on a multi-node Ray cluster on one machine (ray.cluster_utils.Cluster), with faults injected
mid-sweep: a worker process killed with SIGKILL, a unit that fails every time, a node removed. After each,
the rows are counted against the expected set: every row exactly once, nothing lost.

The cluster: a head with no CPUs (the driver only) and two 1-CPU nodes, so each of the two workers sits
on a node of its own."""

import os
import pathlib
import signal
import sys

import duckdb
import pytest
import ray
from ray.cluster_utils import Cluster

import harness.run.ray_pool as ray_pool
from harness.jobs import load_job
from harness.results.failures import read_failures
from harness.results.store import RunStore
from harness.run.pool import ActorPool
from harness.run.ray_pool import RemoteWorker
from harness.sweep import run_sweep

PROMPTS = [{"prompt": f"a house number {i}", "target": "a painting"} for i in range(4)]
SITES = {"kind": "cross_attn", "index": "13-15"}
ROWS_PER_UNIT = 3 + 2  # 3 variants + control + target, 1 prompt × 1 seed per unit

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the failing worker below travels by value


def job(**kw):
    return load_job({"name": "cluster", "model": "tiny:sd15", "method": "locogen", "prompts": PROMPTS,
                     "sites": SITES, "steps": 4, "executor": {"workers": 2}, **kw})


def expected_row_ids() -> list[str]:
    variants = ["control", "target", *(f"cross_attn#{i}" for i in (13, 14, 15))]
    return sorted(f"p{p:05d}-s0-{v}" for p in range(len(PROMPTS)) for v in variants)


def rows(run_dir) -> list[tuple]:
    return duckdb.sql(f"SELECT row_id, ray_node FROM read_parquet('{run_dir}/results/**/*.parquet') "
                      "ORDER BY row_id").fetchall()


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    # Cluster() records its head in the Ray address file, where a later bare ray.init() would find it.
    pathlib.Path(ray._private.utils.get_ray_address_file(None)).unlink(missing_ok=True)


def kill_once_mid_unit(monkeypatch, kill):
    """After the first unit has finished, `kill(slot)` the first worker seen busy with another one."""
    real, killed = ActorPool.dispatch, []

    def dispatch_then_kill(self):
        real(self)
        busy = [s for s in self.slots if s.state == "busy" and s.pid]
        if not killed and busy and any(s.done for s in self.slots):
            killed.append(busy[0].pid)
            kill(busy[0])

    monkeypatch.setattr(ActorPool, "dispatch", dispatch_then_kill)
    return killed


def after_first_unit(monkeypatch, action):
    """Run `action(rows of the first written unit)` once, right after that unit is written."""
    write, fired = RunStore.write_unit, []

    def write_then_act(self, method, unit_id, unit_rows, *args, **kwargs):
        path = write(self, method, unit_id, unit_rows, *args, **kwargs)
        if not fired:
            fired.append(unit_id)
            action(unit_rows)
        return path

    monkeypatch.setattr(RunStore, "write_unit", write_then_act)
    return fired


def test_actors_run_on_different_nodes_and_cover_every_unit(cluster, tmp_path):
    summary = run_sweep(job(executor={"workers": 2, "address": cluster.address}), out=tmp_path / "r")
    found = rows(tmp_path / "r")
    assert [r[0] for r in found] == expected_row_ids() and summary.units_run == 4
    assert len({r[1] for r in found}) == 2  # both nodes did work


def test_a_worker_killed_with_sigkill_mid_sweep_loses_and_repeats_no_row(cluster, tmp_path, monkeypatch):
    killed = kill_once_mid_unit(monkeypatch, lambda slot: os.kill(slot.pid, signal.SIGKILL))
    summary = run_sweep(job(), out=tmp_path / "r")
    assert killed, "the kill must have happened mid-sweep"
    assert not summary.failures and [r[0] for r in rows(tmp_path / "r")] == expected_row_ids()
    assert (tmp_path / "r" / "failures.parquet").exists() and read_failures(tmp_path / "r") == []


class FailingWorker(RemoteWorker):
    """A worker whose unit for prompt 2 fails every time, as fp16 overflow to NaN would."""

    def run_unit(self, unit):
        if 2 in unit.prompt_indices:
            raise FloatingPointError("prompt p00002 gave NaN images")
        return super().run_unit(unit)


def test_a_unit_that_always_fails_lands_in_the_failures_table_and_the_rest_completes(cluster, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setattr(ray_pool, "RemoteWorker", FailingWorker)
    summary = run_sweep(job(executor={"workers": 2, "max_retries": 1}), out=tmp_path / "r")
    assert [f.error for f in summary.failures] == ["FloatingPointError: prompt p00002 gave NaN images"]
    (failure,) = read_failures(tmp_path / "r")
    assert failure.attempts == 2 and failure == summary.failures[0]
    assert [r[0] for r in rows(tmp_path / "r")] == [i for i in expected_row_ids() if not i.startswith("p00002")]
    assert duckdb.sql(f"SELECT * FROM '{tmp_path}/r/failures.parquet'").columns[:3] == ["unit_id", "error", "attempts"]

    monkeypatch.setattr(ray_pool, "RemoteWorker", RemoteWorker)  # the cause fixed: a re-run retries only it
    again = run_sweep(job(), out=tmp_path / "r")
    assert (again.units_run, again.units_skipped, again.failures) == (1, 3, ())
    assert [r[0] for r in rows(tmp_path / "r")] == expected_row_ids() and read_failures(tmp_path / "r") == []


def test_a_node_removed_mid_sweep_loses_and_repeats_no_row(cluster, tmp_path, monkeypatch):
    # Last in this module: it takes one of the two nodes away (and puts a fresh one back for later users).
    removed = []

    def remove_the_other_node(unit_rows):
        node_of_finished = unit_rows[0]["ray_node"]
        other = next(n for n in cluster.worker_nodes if n.node_id != node_of_finished)
        cluster.remove_node(other, allow_graceful=False)
        removed.append(other.node_id)

    after_first_unit(monkeypatch, remove_the_other_node)
    summary = run_sweep(job(), out=tmp_path / "r")
    found = rows(tmp_path / "r")
    assert removed and not summary.failures
    assert [r[0] for r in found] == expected_row_ids()
    cluster.add_node(num_cpus=1)


def test_a_cluster_that_loses_every_worker_node_waits_executor_node_wait_then_stops(cluster, tmp_path, monkeypatch):
    # After the node test above: takes every worker node away, waits the job's node_wait for a replacement
    # (shown in the progress display), stops keeping the finished parts, and puts the nodes back.
    from harness.errors import Stopped
    from harness.run.progress import SweepProgress

    shown = []
    real = SweepProgress.workers
    monkeypatch.setattr(SweepProgress, "workers", lambda self, states: (shown.append(states), real(self, states)))
    after_first_unit(monkeypatch, lambda unit_rows: [cluster.remove_node(n, allow_graceful=False)
                                                     for n in list(cluster.worker_nodes)])
    try:
        # node_wait also bounds the workers' first start (loading the model: ~10 s each on 2 idle cores)
        with pytest.raises(Stopped, match=r"no worker has been able to start for 30 s \(executor.node_wait"):
            run_sweep(job(executor={"workers": 2, "node_wait": 30}), out=tmp_path / "r")
    finally:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
    manifest = __import__("json").loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and len(rows(tmp_path / "r")) >= ROWS_PER_UNIT
    waits = [detail for states in shown for _, _, detail in states if "waiting for a node" in detail]
    assert waits and waits[-1].endswith("of 30 s (executor.node_wait)")
