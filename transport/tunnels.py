"""Port forwarding for the controller: Context.forward_local() and forward_remote().

A local forward listens here and, for each connection it accepts, asks the
context to connect to the remote host and port; a remote forward asks the
context to listen and, for each connection it accepts there, connects here
to the local host and port. Either way the bytes travel as messages between
two tunnel ends (transport/core/tunnels.py), through every intermediary on
the route, with flow control. The controller connects only to the address
the caller gave: a target can announce connections but never choose where
they go. A tunnel that cannot be made closes the connection that asked for
it and is logged as a warning naming the host.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import TYPE_CHECKING, Any, Callable

from transport.context import is_handle
from transport.core import codec, tunnels
from transport.core.framing import Message
from transport.core.spawn import printable
from transport.errors import MAX_REASON, ProtocolError, TransportError, shown_value

if TYPE_CHECKING:
    from concurrent.futures import Future

    from transport.context import Context

log = logging.getLogger("transport")


# Tunnels open at once through one Forward; connections beyond are closed (a
# hostile target cannot make the controller open connections without bound).
MAX_TUNNELS = 256
CONNECT_GRACE = 10.0  # how much longer than its own connect timeout the target may take

# Each context's connect service, asked for by its first local forward without waiting
# (a forward listens at once; only connections made before the answer wait for it). It
# is kept on the context (whose future refers back to it: a weak dictionary's key would
# never go).
_connectors_lock = threading.Lock()


def _connector_of(context: Context) -> Future:
    with _connectors_lock:
        future = context._connector
        if future is None:
            future = context._connector = context.call_async(tunnels.connector)
        return future


class Forward:
    """A forwarded port, open until close() or the end of a with block.

    `port` is the port listened on (useful when 0 asked the system for one).
    Closing stops listening and closes the tunnels still open.
    """

    def __init__(self, context: Context, description: str) -> None:
        self.context = context
        self.description = description
        self.port = 0
        self._core = context.router._core
        self._lock = threading.Lock()
        self._pumps: set[tunnels.Pump] = set()
        self._pending = 0  # tunnels being set up
        self._closed = False

    def _watch_context(self) -> None:
        """Once listening: close when the context goes (at once if it is gone already)."""
        self.context._call_when_lost(self._context_lost)

    def _context_lost(self) -> None:
        """The context is gone (or its router closed): nothing can be forwarded any more,
        so stop listening here too and free the port (on a thread: it waits for the
        listener's thread)."""
        if not self._closed:
            threading.Thread(target=self.close, daemon=True,
                             name="transport-tunnel-close").start()

    def __enter__(self) -> Forward:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Forward {self.description} on {self.context.name}>"

    def close(self) -> None:
        self.context._forget_when_lost(self._context_lost)
        with self._lock:
            self._closed = True
            pumps = list(self._pumps)
        for pump in pumps:
            pump.reset()

    def _set_up(self, make: Callable[[Any], None], arg: Any) -> bool:
        """Run make(arg), which makes a tunnel, on a thread of its own; False (and no
        thread) once closed or while MAX_TUNNELS are open or being made."""
        with self._lock:
            if self._closed or len(self._pumps) + self._pending >= MAX_TUNNELS:
                return False
            self._pending += 1
        threading.Thread(target=self._setting_up, args=(make, arg), daemon=True,
                         name="transport-tunnel-setup").start()
        return True

    def _setting_up(self, make: Callable[[Any], None], arg: Any) -> None:
        try:
            make(arg)
        finally:
            with self._lock:
                self._pending -= 1

    def _end(self, sock: socket.socket) -> tunnels.Pump | None:
        """The controller's end of a new tunnel, or None once closed."""
        pump = tunnels.Pump(self._core, sock, self.context.context_id, self._forget)
        with self._lock:
            if self._closed:
                sock.close()
                return None
            self._pumps.add(pump)
        pump.handle = self._core.add_stream_handler(pump.on_message, self.context.context_id)
        return pump

    def _forget(self, pump: tunnels.Pump) -> None:
        with self._lock:
            self._pumps.discard(pump)

    def _failed(self, what: str, error: BaseException | str) -> None:
        log.warning("%s: %s: %s failed: %s", self.context.name, self.description, what, error)


class LocalForward(Forward):
    def __init__(self, context: Context, local_host: str, local_port: int, remote_host: str,
                 remote_port: int) -> None:
        super().__init__(context, f"forward {local_host}:{local_port} to "
                                  f"{remote_host}:{remote_port} there")
        self.remote = (remote_host, remote_port)
        self._connector = _connector_of(context)
        self._listener = tunnels.Listener(local_host, local_port, self._start)
        self.port = self._listener.port
        self._watch_context()

    def _start(self, conn: socket.socket) -> None:
        if not self._set_up(self._tunnel, conn):
            conn.close()

    def _tunnel(self, conn: socket.socket) -> None:
        pump = self._end(conn)
        if pump is None:
            return
        there = None
        try:
            there = self._connect_there(pump)
        finally:
            if there is None:  # (whatever went wrong) the connection and its slot go
                pump.close()
        if there is not None:
            pump.start(there)

    def _connect_there(self, pump: tunnels.Pump) -> int | None:
        """Have the context connect its end to pump's; its handle, or None (logged)."""
        what = f"connecting to {self.remote[0]}:{self.remote[1]} there"
        wait = tunnels.CONNECT_TIMEOUT + CONNECT_GRACE
        try:
            connector = self._connector.result(wait)
        except Exception as e:
            self._failed(what, e)
            return None
        if not is_handle(connector):
            self._failed(what, f"malformed connect service {shown_value(connector)}")
            return None
        reply = self.context._request(connector, (*self.remote, pump.handle), wait)
        if len(reply) == 2 and reply[0] == "ok" and is_handle(reply[1]):
            return reply[1]
        known = len(reply) == 2 and reply[0] in ("error", "lost")
        self._failed(what, printable(str(reply[1]) if known else f"malformed answer {shown_value(reply)}",
                                     MAX_REASON))
        return None

    def close(self) -> None:
        self._listener.stop()
        super().close()


class RemoteForward(Forward):
    def __init__(self, context: Context, remote_host: str, remote_port: int, local_host: str,
                 local_port: int) -> None:
        super().__init__(context, f"forward {remote_host}:{remote_port} there to "
                                  f"{local_host}:{local_port}")
        self.local = (local_host, local_port)
        self._announced = self._core.add_stream_handler(self._on_accepted, context.context_id)
        try:
            listening = context.call(tunnels.listen, remote_host, remote_port, self._announced)
            if not (isinstance(listening, tuple) and len(listening) == 2
                    and all(type(n) is int for n in listening)):
                raise ProtocolError(f"{context.name}: malformed answer to listen: "
                                    f"{shown_value(listening)}")
            self._listener_id, self.port = listening
        except BaseException:
            self._core.remove_handler(self._announced)
            raise
        self._watch_context()

    def _on_accepted(self, msg: Any) -> None:
        """Broker thread: the context accepted a connection; its end's handle."""
        if msg.is_dead:
            return
        try:
            there = codec.decode(msg.data)
        except codec.CodecError as e:
            there = e
        if not is_handle(there):
            raise ProtocolError(f"{self.context.name}: malformed tunnel announcement: {shown_value(there)}")
        if not self._set_up(self._tunnel, there):
            _tell(self.context, there, tunnels.RESET)

    def _tunnel(self, there: int) -> None:
        try:
            conn = socket.create_connection(self.local, tunnels.CONNECT_TIMEOUT)
            conn.settimeout(None)
        except OSError as e:
            self._failed(f"connecting to {self.local[0]}:{self.local[1]} here", e)
            _tell(self.context, there, tunnels.RESET)
            return
        pump = self._end(conn)
        if pump is None:
            _tell(self.context, there, tunnels.RESET)
            return
        pump.start(there)
        _tell(self.context, there, tunnels.PEER, pump.handle)

    def close(self) -> None:
        if self.context.alive:
            try:
                self.context.call(tunnels.stop_listening, self._listener_id)
            except TransportError:
                pass  # the context went meanwhile: its listener with it
        super().close()
        self._core.remove_handler(self._announced)


def _tell(context: Context, handle: int, kind: int, value: int = 0) -> None:
    core = context.router._core
    core.send(Message(context.context_id, core.context_id, handle, codec.encode((kind, value))))
