"""What a Router kept open for hours must not accumulate: handlers, connections,
records of failed connects, whole closed Routers."""

from __future__ import annotations

import gc
import time
import weakref

import transport

PY = "/usr/bin/python3"


def test_commands_that_cannot_start_leave_no_handler_behind():
    with transport.Router() as router:
        ctx = router.local(python=PY)
        ctx.run("true")
        before = len(router._core._handlers)
        for _ in range(10):
            for start in (ctx.run, lambda argv: ctx.start(argv).wait()):
                try:
                    start(["/nonexistent/program"])
                except transport.RemoteError as e:
                    assert e.remote_type == "FileNotFoundError"
                else:
                    raise AssertionError("a missing program ran")
        assert len(router._core._handlers) == before


def test_a_context_that_has_gone_frees_its_connection_once_reaped():
    # A cancelled connect timer held the connection until its connect_timeout passed.
    # (Its stderr reader and reaper hold it until the process has exited and been
    # reaped, a moment after the context is gone: seconds, not the connect_timeout.)
    with transport.Router() as router:
        ctx = router.local(python=PY, connect_timeout=600)
        connection = weakref.ref(router._connections[ctx.context_id])
        ctx.shutdown()
        assert ctx.context_id not in router._connections
        deadline = time.monotonic() + 10
        while connection() is not None and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.05)
        assert connection() is None


def test_failed_connects_leave_no_record_behind():
    with transport.Router() as router:
        group = transport.Group(router, ["127.0.0.1:1"], connect_timeout=5)
        for _ in range(3):
            assert list(group.call(pow, 2, 2).failed) == ["127.0.0.1:1"]
        assert router._lost_early == {}


def test_a_closed_router_whose_context_forwarded_a_port_is_freed():
    def used_and_closed() -> weakref.ref:
        with transport.Router() as router:
            ctx = router.local(python=PY)
            with ctx.forward_local(0, 9, "127.0.0.1", "127.0.0.1"):
                pass
            return weakref.ref(router)

    routers = [used_and_closed() for _ in range(2)]
    deadline = time.monotonic() + 10  # (the broker thread lets go of it as it ends)
    while any(router() is not None for router in routers) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert [router() for router in routers] == [None, None]
