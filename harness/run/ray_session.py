"""Where loco's Ray runs, and how its workers get their code: decided here, on purpose.

Two ways to run, and what each promises:

* **A private Ray on this machine** (no ``executor.address``, no ``RAY_ADDRESS``): started by the sweep and
  stopped when it ends. Its workers are this interpreter in this environment — nothing is copied, no
  working directory is uploaded — so a path means to a worker what it means to the user, whatever folder
  the command was typed in, git-ignored folders included. Every process of it (GCS, raylet, object
  manager, workers, agents) listens on 127.0.0.1 only: Ray without token authentication runs any code a
  client sends, so nothing of it may be reachable from another machine.
* **A joined cluster** (``--address``, ``executor.address``, ``RAY_ADDRESS``): each node has loco
  installed by `cluster.yaml`'s setup (``uv sync --frozen`` from the lock file) and runs Ray from that
  environment; the sweep uploads no working directory either. The user's files travel as absolute paths
  (`harness.paths`) and must be where every node can read them (a shared volume).

Two of Ray's defaults would break this, and both are switched off here with Ray's own switches:

* ``RAY_ENABLE_UV_RUN_RUNTIME_ENV``: when the driver runs under ``uv run``, Ray 2.60 starts every worker
  through ``uv run`` in an *uploaded copy of the current directory* (its `uv_runtime_env_hook`). From a
  folder outside the checkout that fails before any work ("pyproject.toml is not in the working_dir"), and
  from the checkout the copy leaves out git-ignored folders such as ``runs/``.
* ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``: with it off, Ray takes 127.0.0.1 as the node's address (its
  single-machine mode), and its servers bind to it instead of every interface. Set only while the private
  Ray starts, so a later join of a real cluster from the same process still finds the machine's address.

Ray reads both from the environment when it is imported, so each is set in ``os.environ`` (for the
processes Ray starts) and in `ray._private.ray_constants` (where this process already read it).
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger("loco")
LOOPBACK = "127.0.0.1"
NODE_PROCESSES = ("raylet", "gcs_server")  # a private Ray whose raylet or GCS is gone cannot run anything
_private_node: list[int] = []  # those processes of the private Ray `init_ray` started; [] on a joined cluster
_names: dict[int, str] = {}  # their names, for the message
_session: dict[str, str] = {}  # {"gcs": address} of that Ray, so a later session (tests) is not mistaken for it


def _set_ray_switch(name: str, value: bool) -> None:
    from ray._private import ray_constants

    os.environ[name] = "1" if value else "0"
    attribute = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "ENABLE_RAY_CLUSTER"}.get(name, name)
    setattr(ray_constants, attribute, value)


@contextlib.contextmanager
def _single_machine():
    """Ray's single-machine mode while a private Ray starts: its node address is 127.0.0.1."""
    from ray._private import ray_constants

    name = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    before_env, before = os.environ.get(name), ray_constants.ENABLE_RAY_CLUSTER
    _set_ray_switch(name, False)
    try:
        yield
    finally:
        if before_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before_env
        ray_constants.ENABLE_RAY_CLUSTER = before


def init_ray(address: str | None) -> bool:
    """Join `address`, or start a private Ray on this machine bound to 127.0.0.1, without the dashboard.
    Either way no working directory is uploaded. True when this call started Ray (so the caller stops it
    again). loco's SIGTERM handler, which Ray replaces when it starts, is put back (`harness.run.signals`)."""
    import ray

    from harness.run.signals import reinstall

    if ray.is_initialized():
        return False
    _set_ray_switch("RAY_ENABLE_UV_RUN_RUNTIME_ENV", False)
    # The pool takes the result of every call it needs; the ones it drops are pings and units of actors it
    # is killing (a sweep stopping on a user error), whose errors Ray would print as tracebacks on the way out.
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        reinstall()
        _watch([])
        return False
    # address="local": a new private instance even when `ray start` left one running on this machine (a bare
    # ray.init() would join that one, and its resources and its lifetime are not ours).
    # The raylet aborts when its agents have not started within 15 s; on a loaded machine (a shared CI host)
    # importing their Python takes longer, so a private Ray gives them a minute.
    os.environ.setdefault("RAY_agent_register_timeout_ms", "60000")
    with _single_machine():
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, _node_ip_address=LOOPBACK)
    reinstall()
    _watch(private_node_pids())
    return True


def _watch(pids: list[int]) -> None:
    import psutil
    import ray

    _private_node[:] = pids
    _session["gcs"] = ray.get_runtime_context().gcs_address
    _names.clear()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            _names[pid] = psutil.Process(pid).name()


def private_node_pids() -> list[int]:
    """The raylet and GCS server of the private Ray this process started (its children)."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.name() in NODE_PROCESSES:
                found.append(child.pid)
    return found


def node_lost() -> str | None:
    """What died, in words, when the private Ray's only node is gone; None while it lives (and always on a
    joined cluster, where another node can take the work: `executor.node_wait` bounds that wait)."""
    import psutil
    import ray

    if not _private_node or not ray.is_initialized() or ray.get_runtime_context().gcs_address != _session.get("gcs"):
        return None
    for pid in _private_node:
        try:
            proc = psutil.Process(pid)
            alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        if not alive:
            return f"the private Ray's node died (its {_names.get(pid, 'process')} {pid} is gone: out of memory, or killed)"
    return None


def check_node() -> None:
    """Raise `Stopped` when the private Ray's node died: on one machine that is final, so the sweep ends
    within seconds, keeping its finished units, instead of waiting for workers that cannot come back."""
    from harness.errors import Stopped

    problem = node_lost()
    if problem:
        raise Stopped(f"{problem}; finished units are kept, run the same command again to resume")
