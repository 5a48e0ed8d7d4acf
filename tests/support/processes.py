"""Watching processes from the tests: whether one still runs, waiting for it to end."""

from __future__ import annotations

import time


def alive(pid: int) -> bool:
    """Whether pid is a running process (a zombie nobody has reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(") ")[2][:1]
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, limit: float = 30.0) -> bool:
    """Wait until pid is gone; False if it still runs after limit seconds (a hang stopper)."""
    deadline = time.monotonic() + limit
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
