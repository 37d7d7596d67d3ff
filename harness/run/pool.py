"""A pool of restartable Ray actors that pull work units from one queue and survive their own deaths.

Why a pool of our own rather than Ray's automatic task retries: a sweep must tell apart three things that
Ray reports alike or not at all —

* **a worker died** (OOM kill, ``kill -9``, `ray.kill`, a preempted or lost node). The unit it was running
  is put back at the head of the queue and another worker takes it. The dead worker is brought back:
  actors are created with ``max_restarts=-1``, so Ray restarts a crashed one (re-running its constructor,
  which loads the model again) on any node with room; the pool pings it with a call that waits through
  the restart. An actor gone for good (`ray.kill`, restarts impossible) is replaced by a new one, up to a
  budget, so a constructor that crashes every time cannot loop forever.
* **a unit failed for a reason of its own** (an exception inside the unit: NaN images, a prompt the encoder
  cannot take). The worker is fine; the unit is retried up to ``retries`` times — by whichever worker is
  free — and then reported as a `Failed` event for the failures table, while the sweep goes on. A
  `UserError` is not retried: it would fail the same way.
* **a mistake in the job**, raised by a worker's constructor (an uncached model, a bad site): that ends the
  sweep at once with its one-line message.

Work is *pulled*: each worker holds at most one unit and gets the next when it returns one, so a fast
GPU runs more units than a slow one and all finish within one unit of each other. Actor tasks carry
``max_task_retries=0`` (at most once): a unit re-runs only when the pool decides it, so no row is ever
written twice.

    pool = ActorPool(lambda: Worker.remote(job), size=2, call=lambda a, u: a.run_unit.remote(u), retries=2)
    for unit in units:
        pool.submit(unit, unit.unit_id)
    while pool.busy:
        for event in wait([pool]):
            ...  # Done(key, item, result, worker) or Failed(failure, item)
"""

from __future__ import annotations

import logging
import time
import traceback as tb
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from harness.errors import Stopped, UserError
from harness.results.failures import UnitFailure, one_line

log = logging.getLogger("loco")
WORKER_DIED = "WorkerDied"


class WorkersLost(Stopped):
    """No worker is left and none can be started; the message says what the workers died of."""


@dataclass
class Slot:
    """One worker's place in the pool: its actor (the current one, after replacements) and what it does."""

    name: str
    actor: Any
    state: str = "starting"  # starting | idle | busy | restarting | gone
    key: str | None = None  # the unit it runs
    item: Any = None
    pid: int | None = None
    node: str | None = None
    done: int = 0  # units finished
    deaths: int = 0  # deaths since its last finished unit
    since: float = field(default_factory=time.monotonic)

    def become(self, state: str, item: Any = None, key: str | None = None) -> None:
        self.state, self.item, self.key, self.since = state, item, key, time.monotonic()


@dataclass(frozen=True)
class Done:
    key: str
    item: Any
    result: Any
    worker: str


@dataclass(frozen=True)
class Failed:
    failure: UnitFailure
    item: Any


class ActorPool:
    """Workers of one kind (generation for one model, or scoring) sharing one queue of units."""

    def __init__(self, spawn: Callable[[], Any], size: int, call: Callable[[Any, Any], Any], *, retries: int,
                 name: str = "worker", ping: Callable[[Any], Any] | None = None,
                 replacements: int | None = None, stall_seconds: float = 600.0):
        self.spawn, self.call, self.retries, self.name = spawn, call, retries, name
        self.ping = ping or (lambda actor: actor.ready.options(max_task_retries=-1).remote())
        self.replacements_left = size * (retries + 1) if replacements is None else replacements
        self.stall_seconds = stall_seconds
        self.queue: deque = deque()
        self.attempts: dict[str, int] = {}
        self.pings: dict = {}  # ref -> slot
        self.tasks: dict = {}  # ref -> slot
        self.slots = [Slot(f"{name}-{i}", spawn()) for i in range(size)]
        self.last_event = time.monotonic()
        self.causes: list[str] = []  # what workers died of, for the error when none is left
        for slot in self.slots:
            self._ping(slot, "starting")

    # ---- the queue -------------------------------------------------------------------------------------
    def submit(self, item: Any, key: str) -> None:
        self.queue.append((item, key))

    @property
    def busy(self) -> bool:
        """Units still queued or running."""
        return bool(self.queue or self.tasks)

    def refs(self) -> list:
        return [*self.tasks, *self.pings]

    def dispatch(self) -> None:
        """Give every idle worker the next unit; fail loudly when units wait and no worker can ever run
        them (all gone)."""
        for slot in self.slots:
            if not self.queue:
                break
            if slot.state == "idle":
                item, key = self.queue.popleft()
                slot.become("busy", item, key)
                self.tasks[self.call(slot.actor, item)] = slot
        if self.queue and not self.tasks:
            if all(s.state == "gone" for s in self.slots):
                raise WorkersLost(f"every {self.name} died and none could be replaced; last causes: "
                                  f"{'; '.join(self.causes[-3:]) or 'unknown'} (see `ray logs`)")

    def check_stalled(self) -> None:
        """Called when nothing came back for a while: fail when units have waited `stall_seconds` with no
        worker able to run them."""
        waited = self.waiting()
        if waited is not None and waited > self.stall_seconds:
            raise WorkersLost(f"no {self.name} has been able to start for {self.stall_seconds:.0f} s "
                              "(executor.node_wait: no node with free resources, or a lost node not replaced); "
                              "finished units are kept, run the same command again to resume")

    def waiting(self) -> float | None:
        """Seconds units have waited with no worker able to run them (workers starting or restarting, e.g.
        after their node was lost), or None while work runs. The sweep stops at `stall_seconds`."""
        if self.queue and not self.tasks and not any(s.state == "idle" for s in self.slots):
            return time.monotonic() - self.last_event
        return None

    # ---- results ---------------------------------------------------------------------------------------
    def handle(self, ref) -> list[Done | Failed]:
        """Digest one finished ref of `refs()`: the events it produces (none for a worker coming back)."""
        self.last_event = time.monotonic()
        if ref in self.pings:
            self._on_ping(self.pings.pop(ref), ref)
            return []
        slot = self.tasks.pop(ref)
        item, key = slot.item, slot.key
        try:
            result = _get(ref)
        except UserError as exc:  # the unit's own mistake: it would fail the same way again
            slot.become("idle")
            return self._fail(key, item, exc, slot, final=True)
        except _actor_errors() as exc:
            slot.deaths += 1
            self.causes.append(one_line(exc))
            log.warning("%s died while running unit %s (%s)", slot.name, key, one_line(exc))
            self._ping(slot, "restarting")
            return self._fail(key, item, exc, slot, died=True)
        except Exception as exc:  # noqa: BLE001 - any error inside the unit is the unit's failure
            slot.become("idle")
            return self._fail(key, item, exc, slot)
        slot.done += 1
        slot.deaths = 0
        slot.become("idle")
        return [Done(key, item, result, slot.name)]

    def _fail(self, key: str, item: Any, exc: BaseException, slot: Slot, died: bool = False,
              final: bool = False) -> list[Failed]:
        attempts = self.attempts[key] = self.attempts.get(key, 0) + 1
        if not final and attempts <= self.retries:
            self.queue.appendleft((item, key))  # next free worker takes it first
            return []
        if died:
            error = f"{WORKER_DIED}: its worker died on each of {attempts} attempts (out of memory? see `ray logs`)"
        else:
            error = one_line(exc)
        trace = "".join(tb.format_exception(exc)) if not died else ""
        return [Failed(UnitFailure(key, error, attempts, WORKER_DIED if died else type(exc).__name__,
                                   slot.name, datetime.now(timezone.utc).isoformat(timespec="seconds"), trace), item)]

    def _ping(self, slot: Slot, state: str) -> None:
        slot.become(state)
        self.pings[self.ping(slot.actor)] = slot

    def _on_ping(self, slot: Slot, ref) -> None:
        try:
            info = _get(ref)
        except UserError:
            raise  # a mistake in the job (model not cached, bad site): the sweep cannot run
        except Exception as exc:  # noqa: BLE001 - gone for good (killed, or its constructor crashed)
            self.causes.append(one_line(exc))
            self._replace(slot)
            return
        if isinstance(info, dict):
            slot.pid, slot.node = info.get("pid"), info.get("node")
        slot.become("idle")

    def _replace(self, slot: Slot) -> None:
        import ray

        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        if self.replacements_left <= 0:
            slot.become("gone")
            log.warning("%s is gone and the replacement budget is spent", slot.name)
            return
        self.replacements_left -= 1
        log.warning("%s is gone for good; starting a new one", slot.name)
        slot.actor = self.spawn()
        self._ping(slot, "starting")

    def wait_ready(self) -> None:
        """Block until every worker has started (benchmarks time units, not model loads)."""
        import ray

        while self.pings:
            ready, _ = ray.wait(list(self.pings), num_returns=1)
            for ref in ready:
                self.handle(ref)

    def shutdown(self) -> None:
        """Kill every actor (the sweep is over or stopping): nothing of ours outlives the driver."""
        import ray

        for slot in self.slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
            slot.become("gone")
        self.tasks.clear()
        self.pings.clear()


def wait(pools: list[ActorPool], timeout: float = 1.0) -> list[Done | Failed]:
    """Dispatch queued units to idle workers, wait up to `timeout` seconds for one result, digest it."""
    return [event for _, event in wait_from(pools, timeout)]


def wait_from(pools: list[ActorPool], timeout: float = 1.0) -> list[tuple[ActorPool, Done | Failed]]:
    """`wait`, each event with the pool it came from (a multi-model sweep routes it to its model)."""
    import ray

    for pool in pools:
        pool.dispatch()
    owners = {ref: pool for pool in pools for ref in pool.refs()}
    if not owners:
        return []
    ready, _ = ray.wait(list(owners), num_returns=1, timeout=timeout)
    if not ready:  # nothing came back: is anything waiting longer than it may?
        for pool in pools:
            pool.check_stalled()
    return [(owners[ref], event) for ref in ready for event in owners[ref].handle(ref)]


def _actor_errors() -> tuple[type[BaseException], ...]:
    from ray.exceptions import OutOfMemoryError, RayActorError, WorkerCrashedError

    return RayActorError, WorkerCrashedError, OutOfMemoryError


def _get(ref) -> Any:
    """`ray.get`, with an exception raised inside the task re-raised as itself."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        raise (cause if isinstance(cause, Exception) else exc) from None
