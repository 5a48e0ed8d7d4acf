"""Port forwarding: Context.forward_local and forward_remote, through chains, with
flow control, half-closes, and failures that stay with the connection that met them."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

import pytest

import transport
from tests.support.echo import EchoServer

PY = "/usr/bin/python3"


def _exchange(port: int, data: bytes) -> bytes:
    """Send data to port here, half-close, and read everything back."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
        sender.start()
        received = bytearray()
        while chunk := s.recv(1 << 20):
            received += chunk
        sender.join()
    return bytes(received)


@pytest.fixture
def echo():
    return EchoServer()


def test_forward_local_connects_from_the_target_through_a_chain(router, sshd, echo):
    import pwd

    web = router.ssh("127.0.0.1", port=sshd.port, user="tp-nopw", python=PY,
                     ssh_options=sshd.ssh_options())
    app = router.sudo(via=web, user="tp-plain", python=PY)
    data = os.urandom(6 * 1024 * 1024)  # many windows each way, before anyone reads
    with app.forward_local(0, echo.port, "127.0.0.1", local_host="127.0.0.1") as forward:
        assert forward.port != 0
        assert _exchange(forward.port, data) == data
        assert _exchange(forward.port, b"") == b""  # an end of file alone, too
    assert echo.uids == [pwd.getpwnam("tp-plain").pw_uid] * 2  # the target connected
    with pytest.raises(ConnectionRefusedError):  # closed: nothing listens any more
        socket.create_connection(("127.0.0.1", forward.port))
    assert app.call(os.getuid) == pwd.getpwnam("tp-plain").pw_uid


def test_forward_remote_listens_on_the_target_and_connects_here(router, sshd, echo):
    from tests import remote_functions as rf

    ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", python=PY,
                     ssh_options=sshd.ssh_options())
    with ctx.forward_remote(0, echo.port, local_host="127.0.0.1") as forward:
        listening = ctx.call(rf.listening_uid, forward.port)
        assert listening == ctx.call(os.getuid)  # the target's own socket listens
        assert ctx.call(rf.exchange, forward.port, b"through" * 100_000) == b"through" * 100_000
    assert echo.uids == [0]  # the controller connected, as root
    assert ctx.call(rf.exchange, forward.port, b"x") is None  # refused: stopped listening


def test_a_tunnel_that_cannot_be_made_closes_its_connection_and_names_the_host(
        router, echo, caplog):
    ctx = router.local(python=PY)
    closed_port = echo.port
    echo.stop()  # nothing listens there now
    with ctx.forward_local(0, closed_port, "127.0.0.1") as forward, \
            caplog.at_level(logging.WARNING, logger="transport"):
        with socket.create_connection(("127.0.0.1", forward.port)) as s:
            s.settimeout(60)
            assert s.recv(10) == b""  # closed at once, not left hanging
    assert any(ctx.name in r.getMessage() and "Connection refused" in r.getMessage()
               for r in caplog.records), caplog.text
    assert ctx.call(pow, 2, 5) == 32  # the context goes on
    server = EchoServer()
    with ctx.forward_remote(0, server.port, local_host="127.0.0.1") as forward:
        server.stop()
        from tests import remote_functions as rf

        assert ctx.call(rf.exchange, forward.port, b"lost") == b""
    assert ctx.call(pow, 2, 5) == 32


def test_closing_a_forward_closes_its_open_tunnels(router, echo):
    ctx = router.local(python=PY)
    with ctx.forward_local(0, echo.port, "127.0.0.1") as forward:
        s = socket.create_connection(("127.0.0.1", forward.port))
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    s.settimeout(60)
    with s:
        assert s.recv(4) == b""


@pytest.mark.parametrize("where", ["here", "there"])
def test_a_forward_listens_on_every_address_of_its_host(router, echo, where):
    # '' is every interface, IPv4 and IPv6, as for bind() and Fabric; a name such as
    # localhost is every address it has (127.0.0.1 and ::1 on many systems), as ssh -L.
    from tests import remote_functions as rf

    ctx = router.local(python=PY)
    families = {info[0] for info in socket.getaddrinfo(None, 0, 0, socket.SOCK_STREAM, 0,
                                                       socket.AI_PASSIVE)}
    loopbacks = [a for f, a in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))
                 if f in families]
    if where == "here":
        forward = ctx.forward_local(0, echo.port, "127.0.0.1", local_host="")
    else:
        forward = ctx.forward_remote(0, echo.port, local_host="127.0.0.1", remote_host="")
    with forward:
        for address in loopbacks:
            if where == "here":
                with socket.create_connection((address, forward.port)) as s:
                    s.sendall(b"ping")
                    assert s.recv(4) == b"ping", address
            else:
                assert ctx.call(rf.exchange, forward.port, b"ping", address) == b"ping", address
    assert len(loopbacks) == 2  # this machine has both: the test shows both were bound


def test_tunnels_on_every_target_python(router, echo):
    from tests import remote_functions as rf
    from tests.support.interpreters import find_interpreters

    data = os.urandom(300_000)
    for version, python in sorted(find_interpreters().items()):
        ctx = router.local(python=python)
        with ctx.forward_local(0, echo.port, "127.0.0.1") as forward:
            assert _exchange(forward.port, data) == data, version
        with ctx.forward_remote(0, echo.port, local_host="127.0.0.1") as forward:
            assert ctx.call(rf.exchange, forward.port, data) == data, version


def test_a_target_that_sends_beyond_the_window_is_cut_off(router, echo):

    from tests import remote_functions as rf

    ctx = router.local(python=PY)
    with ctx.forward_local(0, echo.port, "127.0.0.1") as forward:
        client = socket.create_connection(("127.0.0.1", forward.port))  # it never reads
        deadline = time.monotonic() + 60
        while not any(p.peer_handle for p in forward._pumps) and time.monotonic() < deadline:
            time.sleep(0.01)
        (pump,) = forward._pumps
        assert ctx.call(rf.flood_tunnel, pump.handle, 64 << 20)
        while forward._pumps and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not forward._pumps, "the flooded tunnel is still open"
        client.close()
    assert ctx.call(pow, 2, 5) == 32


def test_a_service_that_closes_at_once_does_not_end_the_target_whatever_sigpipe_is(router):
    # A call may set SIGPIPE to its default (CLI modules do at import): a write to a
    # connection whose peer has gone must still be an error, not the target's end.
    import signal

    from tests import remote_functions as rf

    ctx = router.local(python=PY)
    assert ctx.call(rf.set_signal, signal.SIGPIPE, "default")
    server = socket.create_server(("127.0.0.1", 0))

    def close_at_once() -> None:
        while True:
            try:
                server.accept()[0].close()
            except OSError:
                return

    threading.Thread(target=close_at_once, daemon=True).start()
    try:
        with ctx.forward_local(0, server.getsockname()[1]) as forward:
            with socket.create_connection(("127.0.0.1", forward.port)) as client:
                try:
                    client.sendall(b"x" * (8 << 20))
                    client.recv(1)
                except OSError:
                    pass
        assert ctx.call(pow, 2, 3) == 8
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()


def test_a_forward_stops_listening_when_its_context_or_router_goes(echo):

    def refused(port):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except ConnectionRefusedError:
                return True
            except ConnectionResetError:
                pass  # it was in the backlog of a listening socket that closed: try again
            time.sleep(0.05)
        return False

    with transport.Router() as router:
        ctx = router.local(python=PY)
        lost = ctx.forward_local(0, echo.port, "127.0.0.1")  # never closed by the caller
        ctx.shutdown()
        assert refused(lost.port)
        kept = router.local(python=PY).forward_local(0, echo.port, "127.0.0.1")
        assert _exchange(kept.port, b"still") == b"still"
    assert refused(kept.port)  # the router closed: the port is free again
    with socket.socket() as again:
        again.bind(("127.0.0.1", kept.port))


def test_a_forward_on_a_lost_context_is_refused_and_never_listens(router, echo):
    ctx = router.local(python=PY)
    kept = ctx.forward_local(0, echo.port, "127.0.0.1")
    for _ in range(5):  # each closed forward lets go of its context
        ctx.forward_local(0, echo.port, "127.0.0.1").close()
    assert ctx._lost_callbacks == [kept._context_lost]
    ctx.shutdown()
    with pytest.raises(transport.Disconnected, match=f"^{ctx.name}: disconnected"):
        ctx.forward_local(0, echo.port, "127.0.0.1")
    # One whose context is lost while it is made closes once it listens (the callback
    # then runs at once).
    from transport.tunnels import LocalForward

    late = LocalForward(ctx, "127.0.0.1", 0, "127.0.0.1", echo.port)
    deadline = time.monotonic() + 10
    while not late._closed and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", late.port), timeout=5).close()


def test_a_local_forward_connects_while_a_call_runs_there(router, echo, tmp_path):
    """The target connects a tunnel on a thread of its own: a call that has not
    returned yet holds neither a forward's making nor its connections (nor they the
    calls). (Only a context's first forward asks it for its connect service.)"""
    from tests import remote_functions as rf

    ctx = router.local(python=PY)
    release = tmp_path / "release"
    ctx.forward_local(0, echo.port, "127.0.0.1", local_host="127.0.0.1").close()
    running = ctx.call_async(rf.wait_for_path, str(release), "returned")
    try:
        with ctx.forward_local(0, echo.port, "127.0.0.1", local_host="127.0.0.1") as forward:
            with socket.create_connection(("127.0.0.1", forward.port)) as s:
                s.settimeout(30)
                s.sendall(b"while a call runs")
                assert s.recv(100) == b"while a call runs"
            assert not running.done()
    finally:
        release.touch()
    assert running.result(30) == "returned"


def _firehose() -> int:
    """A server here that sends to each connection until it closes; its port."""
    server = socket.create_server(("127.0.0.1", 0))

    def pour(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while True:
                conn.sendall(b"z" * 65536)

    def serve() -> None:
        while True:
            conn = server.accept()[0]
            threading.Thread(target=pour, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def test_closing_a_forward_while_data_flows_warns_of_nothing(router, caplog):
    """The data on its way when a forward closes is dropped quietly (it is late, not
    refused): warnings stay for messages a target should not have sent."""
    ctx = router.local(python=PY)
    forward = ctx.forward_local(0, _firehose(), "127.0.0.1", local_host="127.0.0.1")
    received = [0] * 5

    def drain(sock: socket.socket, index: int) -> None:
        with contextlib.suppress(OSError):
            while chunk := sock.recv(1 << 20):
                received[index] += len(chunk)

    socks = [socket.create_connection(("127.0.0.1", forward.port)) for _ in received]
    for index, sock in enumerate(socks):
        threading.Thread(target=drain, args=(sock, index), daemon=True).start()
    with caplog.at_level(logging.WARNING, logger="transport"):
        while min(received) < 4 << 20:  # every tunnel is busy
            time.sleep(0.01)
        forward.close()
        for sock in socks:
            sock.close()
        assert ctx.call(pow, 2, 5) == 32  # what was on its way has come by now
    assert not [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
