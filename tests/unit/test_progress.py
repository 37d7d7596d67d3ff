"""The sweep's live display: what it counts and shows, and that it stays silent when asked or when the
output is not a terminal."""

import io

from harness.run.progress import SweepProgress, format_seconds


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_counts_units_images_rate_eta_and_failures():
    progress = SweepProgress("demo", units=4, images=40, stream=Terminal())
    progress.counts.started -= 10.0  # ten seconds ago
    progress.unit_done(rows=10)
    progress.unit_done(rows=10)
    progress.unit_failed("abc", "ValueError: NaN")
    line = progress.line()
    assert line.startswith("demo: 2/4 units · 20/40 images · 2.00 img/s · ETA 00:10")
    assert line.endswith("· 1 failed")


def test_the_display_shows_each_worker_state_on_a_terminal():
    stream = Terminal()
    with SweepProgress("demo", units=2, images=4, stream=stream) as progress:
        assert progress.enabled
        progress.workers([("worker-0", "busy", "unit 3f2a"), ("worker-1", "restarting", "")])
        progress.live.refresh()
        progress.unit_done(rows=2)
    drawn = stream.getvalue()
    assert "worker-0" in drawn and "restarting" in drawn and "unit 3f2a" in drawn


def test_quiet_or_not_a_terminal_draws_nothing():
    for progress in (SweepProgress("demo", 2, 4, quiet=True, stream=Terminal()),
                     SweepProgress("demo", 2, 4, stream=io.StringIO())):
        with progress:
            progress.unit_done(rows=2)
        assert not progress.enabled and progress.stream.getvalue() == ""


def test_eta_formats_hours_minutes_seconds():
    assert (format_seconds(None), format_seconds(65), format_seconds(3725)) == ("--:--", "01:05", "1:02:05")


def test_a_multi_model_sweep_counts_and_shows_each_model():
    stream = Terminal()
    groups = {"tiny-sd15": (2, 8), "ckpt-b": (1, 4)}
    with SweepProgress("two", units=3, images=12, stream=stream, groups=groups) as progress:
        progress.unit_done(rows=4, group="tiny-sd15")
        progress.unit_failed("abc", "ValueError: NaN", group="ckpt-b")
        progress.workers([("tiny-sd15/worker-0", "busy", "unit 3f2a"), ("ckpt-b/worker-0", "idle", "")])
        progress.live.refresh()
        lines = progress.group_lines()
    assert progress.line().startswith("two: 1/3 units · 4/12 images")
    assert lines[0].startswith("  tiny-sd15: 1/2 units · 4/8 images") and lines[1].endswith("· 1 failed")
    assert "ckpt-b: 0/1 units" in stream.getvalue() and "tiny-sd15/worker-0" in stream.getvalue()
