"""The worker pool's fault rules, on toy actors (no model, so each test takes a second or two): a killed
worker is brought back and its unit re-run once; a unit failing for its own reason is reported after its
retries while the rest completes; work is pulled, so a fast worker runs more units than a slow one."""

import os
import signal
import sys
import time

import pytest
import ray

from harness.errors import UserError
from harness.run.pool import WORKER_DIED, ActorPool, Done, Failed, WorkersLost, wait

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import a test module


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    if not ray.is_initialized():
        # address="local": never join a cluster another test left behind in /tmp/ray/ray_current_cluster
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield


class Toy:
    """Runs `item` by sleeping; items in `fail` raise, items in `die` kill the process (every time), an item
    equal to `die_once` kills it the first time only (a marker file remembers)."""

    def __init__(self, delay=0.05, fail=(), die=(), die_once=None, marker=None, user_error=False):
        if user_error:
            self.error = UserError("model: 'tiny:nope' is not a model")
        else:
            self.error = None
        self.delay, self.fail, self.die, self.die_once, self.marker = delay, fail, die, die_once, marker

    def ready(self):
        if self.error:
            raise self.error
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    def run(self, item):
        if item in self.die or (item == self.die_once and not os.path.exists(self.marker)):
            if self.marker:
                open(self.marker, "w").close()
            os._exit(1)
        if item in self.fail:
            raise ValueError(f"item {item} overflowed to NaN")
        time.sleep(self.delay)
        return item * 10


def spawner(**kw):
    actor = ray.remote(max_restarts=-1, max_task_retries=0)(Toy).options(num_cpus=0)
    return lambda: actor.remote(**kw)


def run_all(pool, items, on_event=None, shutdown=True):
    for item in items:
        pool.submit(item, f"u{item}")
    events = []
    while pool.busy:
        for event in wait([pool], timeout=0.5):
            events.append(event)
            if on_event:
                on_event(event)
    if shutdown:
        pool.shutdown()
    return [e for e in events if isinstance(e, Done)], [e for e in events if isinstance(e, Failed)]


def call(actor, item):
    return actor.run.remote(item)


def test_a_worker_killed_with_sigkill_comes_back_and_its_unit_runs_once():
    pool = ActorPool(spawner(delay=0.3), 2, call, retries=2)
    killed = []

    def kill_a_busy_worker(event):
        busy = [s for s in pool.slots if s.state == "busy" and s.pid]
        if not killed and busy:
            killed.append((busy[0].name, busy[0].pid))
            os.kill(busy[0].pid, signal.SIGKILL)

    done, failed = run_all(pool, range(8), kill_a_busy_worker, shutdown=False)
    assert killed and not failed
    assert sorted(e.result for e in done) == [i * 10 for i in range(8)]  # every unit exactly once
    name, pid = killed[0]
    slot = next(s for s in pool.slots if s.name == name)
    deadline = time.monotonic() + 60
    while slot.state != "idle" and time.monotonic() < deadline:
        wait([pool], timeout=0.5)
    pool.shutdown()
    assert slot.pid != pid  # back, in a new process that Ray started for the same actor


def test_a_worker_removed_with_ray_kill_is_replaced():
    pool = ActorPool(spawner(delay=0.3), 2, call, retries=2)
    killed = []

    def kill_for_good(event):
        busy = [s for s in pool.slots if s.state == "busy"]
        if not killed and busy:
            killed.append(busy[0].actor)
            ray.kill(busy[0].actor, no_restart=True)  # no restart: the pool must start a new actor

    done, failed = run_all(pool, range(6), kill_for_good)
    assert killed and not failed and sorted(e.key for e in done) == sorted(f"u{i}" for i in range(6))
    assert all(s.actor is not killed[0] for s in pool.slots)


def test_units_that_always_fail_are_reported_after_their_retries_and_the_rest_completes():
    # u3 raises inside the unit (its worker is fine); u1 kills its worker each time it runs.
    pool = ActorPool(spawner(fail=(3,), die=(1,)), 2, call, retries=2)
    done, failed = run_all(pool, range(6))
    assert sorted(e.key for e in done) == ["u0", "u2", "u4", "u5"]
    by_unit = {f.failure.unit_id: f.failure for f in failed}
    assert sorted(by_unit) == ["u1", "u3"]
    assert (by_unit["u3"].attempts, by_unit["u3"].error_type) == (3, "ValueError")
    assert by_unit["u3"].error == "ValueError: item 3 overflowed to NaN" and "Traceback" in by_unit["u3"].traceback
    assert (by_unit["u1"].attempts, by_unit["u1"].error_type) == (3, WORKER_DIED)


def test_a_unit_whose_worker_died_once_succeeds_on_its_retry(tmp_path):
    pool = ActorPool(spawner(die_once=2, marker=str(tmp_path / "died")), 2, call, retries=2)
    done, failed = run_all(pool, range(5))
    assert not failed and sorted(e.result for e in done) == [0, 10, 20, 30, 40]
    assert (tmp_path / "died").exists() and pool.attempts == {"u2": 1}


def test_work_is_pulled_so_a_fast_worker_runs_more_units():
    fast, slow = spawner(delay=0.02), spawner(delay=0.4)
    made = iter([fast, slow])
    pool = ActorPool(lambda: next(made)(), 2, call, retries=0)
    done, _ = run_all(pool, range(12))
    by_worker = {s.name: s.done for s in pool.slots}
    assert sum(by_worker.values()) == 12 and by_worker["worker-0"] > 2 * by_worker["worker-1"]


def test_a_mistake_in_the_job_ends_the_sweep_with_its_message():
    pool = ActorPool(spawner(user_error=True), 1, call, retries=2)
    pool.submit(0, "u0")
    with pytest.raises(UserError, match="tiny:nope"):
        while pool.busy:
            wait([pool], timeout=0.5)
    pool.shutdown()


def test_when_no_worker_can_be_replaced_the_error_says_why():
    pool = ActorPool(spawner(die=(0, 1, 2)), 1, call, retries=5, replacements=0)
    pool.ping = lambda actor: actor.ready.options(max_task_retries=0).remote()
    for i in range(3):
        pool.submit(i, f"u{i}")
    with pytest.raises(WorkersLost, match="every worker died"):
        deadline = time.monotonic() + 60
        while pool.busy and time.monotonic() < deadline:
            wait([pool], timeout=0.5)
            for slot in pool.slots:  # make the restarted actor unreachable, as a lost node would
                if slot.state == "restarting":
                    ray.kill(slot.actor, no_restart=True)
    pool.shutdown()
