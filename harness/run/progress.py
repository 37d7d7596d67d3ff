"""The sweep's one live display on the driver: units and images done of total, images per second, ETA,
failures, and what each worker is doing — drawn with `rich` on a terminal, kept off logs and CI.

    with SweepProgress("van-gogh", units=120, images=8400) as progress:
        progress.workers([("worker-0", "busy", "unit 3f2a…"), ("worker-1", "restarting", "")])
        progress.unit_done(rows=70)
        progress.unit_failed("3f2a…", "ValueError: NaN image")

`quiet=True` (``loco sweep --quiet``), or an output that is not a terminal, draws nothing live: failures
still go to the log, and the command prints its one-line summary at the end. Rates count the images of
this invocation only (a resumed run does not claim the finished units' images as its own speed).
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

_quiet = [False]  # `no_live_display` is on: every verb that runs a sweep takes --quiet the same way


@contextmanager
def no_live_display(enabled: bool = True):
    """No live display for the sweeps run inside (a verb's ``--quiet``, however deep the sweep is)."""
    before = _quiet[0]
    _quiet[0] = before or enabled
    try:
        yield
    finally:
        _quiet[0] = before


STATE_STYLE = {"busy": "green", "idle": "dim", "starting": "yellow", "restarting": "yellow", "gone": "red"}


@dataclass
class Counts:
    units: int
    images: int
    units_done: int = 0
    images_done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        """Images per second since the start."""
        elapsed = time.monotonic() - self.started
        return self.images_done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate; None before the first image."""
        left = self.images - self.images_done
        return left / self.rate if self.rate > 0 else None


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class SweepProgress:
    """`groups` (a multi-model sweep: {model: (units, images)}) adds one line of counts per model; events
    then name their model (`unit_done(rows, group)`)."""

    def __init__(self, name: str, units: int, images: int, quiet: bool = False, stream=None,
                 groups: dict[str, tuple[int, int]] | None = None):
        self.name = name
        self.counts = Counts(units, images)
        self.groups = {g: Counts(u, i) for g, (u, i) in (groups or {}).items()}
        self.states: list[tuple[str, str, str]] = []
        self.stream = stream or sys.stderr
        self.live = None
        self.enabled = not quiet and not _quiet[0] and units > 0 and _is_terminal(self.stream)

    # ---- events ----------------------------------------------------------------------------------------
    def unit_done(self, rows: int, group: str | None = None) -> None:
        for counts in (self.counts, *([self.groups[group]] if group in self.groups else [])):
            counts.units_done += 1
            counts.images_done += rows
        self._refresh()

    def unit_failed(self, unit_id: str, error: str, group: str | None = None) -> None:
        import logging

        for counts in (self.counts, *([self.groups[group]] if group in self.groups else [])):
            counts.failed += 1
        logging.getLogger("loco").warning("unit %s%s failed: %s", unit_id, f" ({group})" if group else "", error)
        self._refresh()

    def workers(self, states: list[tuple[str, str, str]]) -> None:
        """(name, state, detail) per worker: state is starting | idle | busy | restarting | gone."""
        if states != self.states:
            self.states = list(states)
            self._refresh()

    # ---- drawing ---------------------------------------------------------------------------------------
    def line(self) -> str:
        return self._line(self.name, self.counts)

    def group_lines(self) -> list[str]:
        """One line per model of a multi-model sweep (none for a single model)."""
        return [self._line(f"  {group}", counts) for group, counts in self.groups.items()]

    @staticmethod
    def _line(name: str, c: Counts) -> str:
        failed = f" · {c.failed} failed" if c.failed else ""
        return (f"{name}: {c.units_done}/{c.units} units · {c.images_done}/{c.images} images · "
                f"{c.rate:.2f} img/s · ETA {format_seconds(c.eta)}{failed}")

    def render(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        c = self.counts
        head = Table.grid(padding=(0, 1))
        head.add_row(ProgressBar(total=max(1, c.units), completed=c.units_done + c.failed, width=30),
                     Text(self.line(), style="red" if c.failed else ""))
        models = [Text(line, style="red" if counts.failed else "")
                  for line, counts in zip(self.group_lines(), self.groups.values())]
        if not self.states:
            return Group(head, *models) if models else head
        table = Table.grid(padding=(0, 2))
        for name, state, detail in self.states:
            table.add_row(f"  {name}", Text(state, style=STATE_STYLE.get(state, "")), Text(detail, style="dim"))
        return Group(head, *models, table)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render())

    def __enter__(self) -> SweepProgress:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self.render(), console=Console(file=self.stream), refresh_per_second=4,
                             transient=True)
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
