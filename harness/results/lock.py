"""One sweep at a time per run directory: an advisory lock taken before anything else is written.

Two sweeps into one ``--out`` at once would interleave their parts and overwrite each other's manifest,
and the "another job" check cannot see a job that has not written its manifest yet. So a sweep first
takes an exclusive `flock` on ``RUN_DIR/.loco-lock`` — before it loads a model or writes any file — and
holds it to the end. The file records the holder (pid, host, command, since) for the one-line refusal a
second sweep prints. The kernel drops the lock when its holder dies (``kill -9``, a lost node), so a
crashed sweep never leaves a directory locked; the file itself stays (removing it would let two sweeps
lock two different files of the same name). flock works across machines on NFSv4 and Lustre; on a
filesystem without locks the sweep says so and does not start.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from harness.errors import UserError

LOCK_NAME = ".loco-lock"


class RunLocked(UserError):
    """Another sweep holds the run directory."""


class RunLock:
    """The lock of one run directory (creating the directory if needed)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.fd: int | None = None
        self.made = False  # this lock made the file (`release(remove=True)` takes it away again)

    def acquire(self) -> RunLock:
        self.root.mkdir(parents=True, exist_ok=True)
        self.made = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise UserError(f"run directory '{self.root}': cannot lock {self.path} ({exc.strerror}); the "
                                "filesystem must support flock (NFSv4, Lustre and local disks do)") from None
            raise RunLocked(f"run directory '{self.root}' is in use by another sweep ({holder}); wait for it to "
                            "finish or choose another --out") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv[:3]),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self.fd = fd
        return self

    def release(self, remove: bool = False) -> None:
        """Drop the lock; `remove`: also the file, when this lock made it (a sweep that wrote nothing)."""
        if self.fd is not None:
            if remove and self.made:
                self.path.unlink(missing_ok=True)
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {holder['pid']} on host {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"
