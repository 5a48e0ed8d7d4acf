"""How salt-ssh's master loop waits for its host processes, in runs with fast hosts.

SSH.handle_ssh starts one process per host and then polls them, sleeping
0.1 s between looks (time.sleep(0.1), its only sleep): a host that is done
waits for the next look, 50 ms on average, and the command for the last one.
While a run with a fast host is in that loop, the time module that
salt.client.ssh sees (HostProcessAwareTime) ends a sleep as soon as one of
this process's children exits, so a finished host is handled at once and the
next host can start. Runs without a fast host sleep as stock does.
"""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.connection
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

_fast_runs = 0  # salt-ssh runs in this process's handle_ssh that have a fast host
_count_lock = threading.Lock()  # salt-api may run several at once


class HostProcessAwareTime:
    """The time module, but sleep() returns early when a child process exits (in a fast run)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        children = multiprocessing.active_children() if _fast_runs else []
        if children:
            multiprocessing.connection.wait([child.sentinel for child in children], seconds)
        else:
            time.sleep(seconds)


def install(ssh: ModuleType, is_fast: Callable[[dict[str, Any]], bool]) -> None:
    """Wrap ssh.SSH.handle_ssh to count fast runs; give ssh the early-waking time module."""
    original_handle_ssh = ssh.SSH.handle_ssh

    @functools.wraps(original_handle_ssh)
    def handle_ssh(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        global _fast_runs
        if not any(isinstance(target, dict) and is_fast(target)
                   for target in (self.targets or {}).values()):
            yield from original_handle_ssh(self, *args, **kwargs)
            return
        with _count_lock:
            _fast_runs += 1
        try:
            yield from original_handle_ssh(self, *args, **kwargs)
        finally:
            with _count_lock:
                _fast_runs -= 1

    ssh.SSH.handle_ssh = handle_ssh
    ssh.time = HostProcessAwareTime()
