"""Keep Ray's own messages out of the sweep's output: they go to ``ray-errors.log`` in the run directory.

Ray's driver runs a thread (`ray._private.worker.listen_error_messages`) that prints every error the
cluster publishes — "A worker died or was killed while executing a task...", OOM-killer reports, node
deaths — to the driver's stdout as ``(raylet) ...`` lines, whatever `log_to_driver` says and with no option
to turn it off. During a sweep these are expected events that the actor pool already handles and reports
in its own words (a worker died, its unit re-queued, a failure in failures.parquet), so the lines are
noise on the terminal and in CI logs, yet worth keeping for a post-mortem. `route_ray_errors` replaces the
thread's print function (looked up by name at each call) with one that appends the ``raylet`` messages to
a file and passes every other message (the actors' own output, when `log_to_driver` is on) through.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("loco")
FILENAME = "ray-errors.log"


def route_ray_errors(log_dir: Path | None) -> None:
    """From now on, Ray's ``(raylet)`` messages in this process go to `log_dir`/ray-errors.log (to the
    debug log when `log_dir` is None) instead of stdout. Safe to call again (a later run directory wins)."""
    try:
        import ray._private.worker as ray_worker
    except ImportError:  # pragma: no cover - Ray moved its internals: leave its output alone
        return
    original = getattr(ray_worker, "_loco_original_print", None) or getattr(ray_worker, "print_to_stdstream", None)
    if original is None:  # pragma: no cover
        return

    def route(data: dict, ignore_prefix: bool = False) -> None:
        if data.get("pid") != "raylet":
            return original(data, ignore_prefix)
        lines = [str(line) for line in data.get("lines", [])]
        if log_dir is None:
            for line in lines:
                log.debug("ray: %s", line)
            return
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            with (log_dir / FILENAME).open("a", encoding="utf-8") as handle:
                handle.writelines(line.rstrip("\n") + "\n" for line in lines)
        except OSError:  # a full disk must not kill the thread that reads Ray's errors
            pass

    ray_worker._loco_original_print = original
    ray_worker.print_to_stdstream = route
