"""Multi-node behaviour on one machine (ray.cluster_utils.Cluster): actors spread over nodes, and a unit
whose actor dies is re-queued and finished by a restarted actor — no row is lost or duplicated."""

import duckdb
import pytest
import ray
from ray.cluster_utils import Cluster

from harness.jobs import load_job
from harness.results.store import RunStore
from harness.run.plan import plan_units
from harness.run.ray_pool import ray_workers, run_ray
from harness.sweep import run_sweep

PROMPTS = [{"prompt": f"a house number {i}", "target": "a painting"} for i in range(4)]


def job(**kw):
    return load_job({"name": "cluster", "model": "tiny:sd15", "method": "locogen", "prompts": PROMPTS,
                     "sites": {"kind": "cross_attn", "index": "12-15"}, "executor": {"workers": 2}, **kw})


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


def test_actors_run_on_different_nodes_and_cover_every_unit(cluster, tmp_path):
    summary = run_sweep(job(executor={"workers": 2, "address": cluster.address}), out=tmp_path / "r")
    nodes = duckdb.sql(f"SELECT count(DISTINCT ray_node), count(*) FROM read_parquet('{tmp_path}/r/results/**/*.parquet')"
                       ).fetchall()[0]
    assert nodes == (2, summary.rows_written) and summary.units_run == 4


def test_units_of_a_dead_actor_are_rerun_by_the_others(cluster, tmp_path):
    spec = job()
    workers = ray_workers(spec)
    units = plan_units(spec, ray.get(workers[0].describe.remote())["variants"])
    ray.kill(workers[1], no_restart=True)  # dies for good: its unit must be re-queued, then it is dropped
    store = RunStore(tmp_path / "r")
    store.open(spec, spec.fingerprint(), {})
    seen: list[str] = []

    def on_result(result):
        seen.append(result.unit_id)
        store.write_unit(spec.method, result.unit_id, result.rows)

    run_ray(spec, units, workers, on_result)
    assert sorted(seen) == sorted(u.unit_id for u in units)
    assert store.completed_units() == {u.unit_id for u in units}
    ray.kill(workers[0])
