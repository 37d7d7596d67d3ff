"""SIGTERM stops loco as Ctrl-C does.

`timeout`, Kubernetes, Slurm and a preempted node send SIGTERM, not SIGINT. While a command runs inside
`stop_on_sigterm`, SIGTERM raises `KeyboardInterrupt` in the main thread, so the same code path runs as
for Ctrl-C: finished units kept, the manifest marked stopped, the actors killed, a private Ray stopped,
one line and exit status 130.

Ray installs its own SIGTERM handler when it starts (`ray.init`: exit at once, with its crash output), so
`harness.run.ray_session.init_ray` calls `reinstall` right after Ray is up.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_depth = 0  # how many `stop_on_sigterm` blocks are open (a verb may call another verb)


def interrupt(signum, frame):
    raise KeyboardInterrupt


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def stop_on_sigterm():
    """SIGTERM raises KeyboardInterrupt inside the block (main thread only; elsewhere signals are left alone)."""
    global _depth
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        signal.signal(signal.SIGTERM, previous)


def reinstall() -> None:
    """Put loco's handler back after a library (Ray) replaced it, when a `stop_on_sigterm` block is open."""
    if _depth and _main_thread():
        signal.signal(signal.SIGTERM, interrupt)
