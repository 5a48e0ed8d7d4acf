"""Health checks the example deploy runs on the hosts with c.call (forwarded on demand)."""

import os
import time


def service_health(root, max_age=5.0):
    """The dummy service's state under root: pid alive, version served, heartbeat age."""
    root = os.path.expanduser(root)
    state = {"running": False, "version": None, "heartbeat_age": None}
    try:
        with open(os.path.join(root, "shared", "service.pid")) as f:
            os.kill(int(f.read()), 0)
        state["running"] = True
    except (OSError, ValueError):
        return state
    heartbeat = os.path.join(root, "shared", "heartbeat")
    deadline = time.time() + max_age
    while time.time() < deadline:  # a just-started service writes its first beat at once
        try:
            with open(heartbeat) as f:
                state["version"] = f.read().strip()
            state["heartbeat_age"] = time.time() - os.stat(heartbeat).st_mtime
            break
        except OSError:
            time.sleep(0.05)
    return state
