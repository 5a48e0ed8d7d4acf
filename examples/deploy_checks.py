"""Health checks the example deploy runs on the hosts with c.call (forwarded on demand)."""

import os
import time

# What open() and os calls raise: Python 2.7's open() raises IOError, not an OSError.
FILE_ERRORS = (IOError, OSError)  # noqa: UP024


def service_health(root, max_age=5.0):
    """The dummy service's state under root: pid alive, version served, heartbeat age."""
    root = os.path.expanduser(root)
    state = {"running": False, "version": None, "heartbeat_age": None}
    try:
        with open(os.path.join(root, "shared", "service.pid")) as f:
            pid = int(f.read())
        os.kill(pid, 0)
    except FILE_ERRORS + (ValueError,):
        return state
    if _zombie(pid):
        return state
    state["running"] = True
    heartbeat = os.path.join(root, "shared", "heartbeat")
    deadline = time.time() + max_age
    while time.time() < deadline:  # a service started by hand may not have beaten yet
        try:
            with open(heartbeat) as f:
                state["version"] = f.read().strip()
            state["heartbeat_age"] = time.time() - os.stat(heartbeat).st_mtime
            break
        except FILE_ERRORS:
            time.sleep(0.05)
    return state


def _zombie(pid):
    """Whether pid has exited and waits to be reaped (a container's init may be slow to)."""
    try:
        with open(os.path.join("/proc", str(pid), "stat")) as f:
            return f.read().rpartition(") ")[2][:1] in ("Z", "X")
    except FILE_ERRORS:  # no /proc here, or the process just went: kill() answered already
        return False
