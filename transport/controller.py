"""Router: the controller's entry point. It owns the broker thread and every context.

    with transport.Router() as router:
        ctx = router.local(python="/usr/bin/python3")
        ctx.call(os.getpid)

Leaving the with block (or close()) shuts every context down and stops the
broker thread.
"""

from __future__ import annotations

import itertools
import sys
import threading

from transport import log
from transport.bootstrap import build
from transport.context import Context
from transport.core.broker import Broker
from transport.core.framing import DEFAULT_MAX_MESSAGE_SIZE, Message
from transport.core.handles import CONTROLLER_ID
from transport.core.router import Router as CoreRouter
from transport.core.spawn import Connection
from transport.errors import ConnectError
from transport.methods.local import LocalMethod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CONNECT_TIMEOUT = 30.0


class Router:
    """Starts contexts and routes their messages; use as a context manager.

    max_message_size bounds every message a target may send (bytes); a
    larger one disconnects that target as a protocol violation.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._broker = Broker(name="transport-broker", on_error=self._on_broker_error)
        self._core = CoreRouter(self._broker, CONTROLLER_ID, on_drop=self._on_drop)
        self._core.on_context_lost.append(self._on_context_lost)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._contexts: dict[int, Context] = {}
        self._connections: dict[int, Connection] = {}
        self._lost_early: dict[int, str] = {}
        self._closed = False
        self._broker.start()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- connection methods ------------------------------------------------------

    def local(self, *, python: str | None = None, name: str | None = None,
              connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Context:
        """Start a Python interpreter on this machine (default: sys.executable)."""
        method = LocalMethod(python or sys.executable)
        return self._connect(method, name or method.default_name(), connect_timeout)

    def _connect(self, method: Any, name: str, connect_timeout: float,
                 pipe_size: int | None = None) -> Context:
        if self._closed:
            raise ConnectError(name, "the router is closed")
        bootstrap = build()
        context_id = next(self._ids)
        config = {"context_id": context_id, "parent_id": CONTROLLER_ID,
                  "max_message_size": self.max_message_size, "name": name}
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def on_ready(connection: Connection, info: dict[str, Any]) -> None:
            outcome["info"] = info
            done.set()

        def on_failed(connection: Connection, reason: str, details: dict[str, Any]) -> None:
            outcome["error"] = (reason, details)
            done.set()

        connection = Connection(self._core, context_id, method.argv(bootstrap), bootstrap.payload,
                                config, connect_timeout, name, on_ready, on_failed,
                                self._on_stderr, pipe_size)
        with self._lock:
            self._connections[context_id] = connection
        self._broker.defer(connection.start)
        # The connection enforces connect_timeout itself; the margin covers a stuck broker.
        if not done.wait(connect_timeout + 5.0):
            self._broker.defer(connection.process.kill) if connection.process else None
            raise ConnectError(name, f"timed out after {connect_timeout}s")
        if "error" in outcome:
            with self._lock:
                self._connections.pop(context_id, None)
            raise method.connect_error(name, *outcome["error"])
        context = Context(self, context_id, name, method.host, outcome["info"])
        with self._lock:
            self._contexts[context_id] = context
            lost = self._lost_early.pop(context_id, None)
        if lost is not None:
            context._lost(lost)
        log.debug("transport", "%s: connected, pid %d, Python %s", name, context.pid, context.python_version)
        return context

    # -- events from the broker thread ---------------------------------------------

    def _on_context_lost(self, context_id: int, reason: str) -> None:
        with self._lock:
            context = self._contexts.pop(context_id, None)
            self._connections.pop(context_id, None)
            if context is None:
                self._lost_early[context_id] = reason
        if context is not None:
            log.debug("transport", "%s: disconnected: %s", context.name, reason)
            context._lost(reason)

    def _on_stderr(self, connection: Connection, line: str) -> None:
        log.info("transport.stderr", "%s: %s", connection.name, line)

    def _on_drop(self, msg: Message, reason: str) -> None:
        log.warning("transport", "dropped %r: %s", msg, reason)

    def _on_broker_error(self, what: Any, exc_info: Any) -> None:
        log.error("transport", "error in %r", what, exc_info=exc_info)

    def _kill(self, context: Context) -> None:
        connection = self._connections.get(context.context_id)
        if connection is not None and connection.process is not None:
            self._broker.defer(connection.process.kill)

    # -- ending ------------------------------------------------------------------------

    def contexts(self) -> list[Context]:
        """The contexts that are connected now."""
        with self._lock:
            return list(self._contexts.values())

    def close(self, timeout: float = 5.0) -> None:
        """Shut every context down (waiting up to timeout), then stop the broker."""
        if self._closed:
            return
        self._closed = True
        contexts = self.contexts()
        for context in contexts:
            context.shutdown(wait=False)
        for context in contexts:
            context.shutdown(wait=True, timeout=timeout)
        self._broker.shutdown()
