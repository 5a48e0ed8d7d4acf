"""Contract tests run against every poller backend available here, over socketpairs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.support.interpreters import find_interpreters
from transport.core.poller import available_pollers, best_poller

BACKENDS = available_pollers()


@pytest.fixture(params=BACKENDS, ids=lambda cls: cls.name)
def poller(request):
    p = request.param()
    yield p
    p.close()


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def _events(poller, timeout=1.0):
    return {fd: (r, w) for fd, r, w in poller.poll(timeout)}


def test_linux_offers_epoll_first_and_every_poller_is_tested():
    assert sys.platform.startswith("linux"), "the test suite runs on Linux"
    assert best_poller().name == "epoll"
    assert {backend.name for backend in BACKENDS} == {"epoll", "poll", "select"}


def test_nothing_ready_returns_empty(poller, pair):
    a, _ = pair
    poller.set_interest(a.fileno(), True, False)
    assert poller.poll(0) == []


def test_readable(poller, pair):
    a, b = pair
    poller.set_interest(a.fileno(), True, False)
    b.send(b"x")
    assert _events(poller) == {a.fileno(): (True, False)}


def test_writable(poller, pair):
    a, _ = pair
    poller.set_interest(a.fileno(), False, True)
    assert _events(poller) == {a.fileno(): (False, True)}


def test_readable_and_writable_at_once_reports_both(poller, pair):
    a, b = pair
    b.send(b"x")
    poller.set_interest(a.fileno(), True, True)
    assert _events(poller) == {a.fileno(): (True, True)}


def test_no_write_events_without_write_interest(poller, pair):
    a, b = pair
    poller.set_interest(a.fileno(), True, False)
    assert poller.poll(0) == []
    b.send(b"x")
    assert _events(poller)[a.fileno()] == (True, False)


def test_hang_up_is_readable_and_reads_end_of_file(poller, pair):
    a, b = pair
    poller.set_interest(a.fileno(), True, False)
    b.close()
    assert _events(poller)[a.fileno()][0] is True
    assert os.read(a.fileno(), 10) == b""


def test_a_pipe_whose_reader_has_gone_is_writable_for_its_writer(poller):
    # The kernel reports only an error for it: a writer that never hears of it
    # would have the loop report the fd on every pass, and never write.
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(write_end, False)
        try:
            while True:
                os.write(write_end, b"x" * 65536)
        except BlockingIOError:
            pass
        os.close(read_end)
        poller.set_interest(write_end, False, True)
        assert _events(poller) == {write_end: (False, True)}
        with pytest.raises(BrokenPipeError):
            os.write(write_end, b"x")
    finally:
        poller.unregister(write_end)
        os.close(write_end)


def test_changing_interest_replaces_it(poller, pair):
    a, b = pair
    b.send(b"x")
    poller.set_interest(a.fileno(), True, False)
    assert _events(poller) == {a.fileno(): (True, False)}
    poller.set_interest(a.fileno(), False, True)
    assert _events(poller) == {a.fileno(): (False, True)}
    assert poller.registered(a.fileno()) == (False, True)


def test_unregister_during_a_pass(poller, pair):
    a, b = pair
    c, d = socket.socketpair()
    try:
        poller.set_interest(a.fileno(), True, False)
        poller.set_interest(c.fileno(), True, False)
        b.send(b"x")
        d.send(b"y")
        results = poller.poll(1.0)
        assert {fd for fd, _, _ in results} == {a.fileno(), c.fileno()}
        poller.unregister(c.fileno())
        # The broker checks registered() before dispatching each result.
        assert poller.registered(c.fileno()) is None
        assert _events(poller) == {a.fileno(): (True, False)}
    finally:
        c.close()
        d.close()


def test_unregister_unknown_fd_is_a_no_op(poller):
    poller.unregister(12345)
    assert poller.registered(12345) is None


def test_clearing_interest_unregisters(poller, pair):
    a, b = pair
    poller.set_interest(a.fileno(), True, True)
    poller.set_interest(a.fileno(), False, False)
    b.send(b"x")
    assert poller.registered(a.fileno()) is None
    assert poller.poll(0) == []


OLD_PYTHON_CHECK = """
import os, socket, sys, types
# Load the core as a target does, without the controller's (Python 3 only) package.
package = types.ModuleType('transport')
package.__path__ = [os.path.join(os.getcwd(), 'transport')]
sys.modules['transport'] = package
from transport.core.poller import available_pollers
for cls in available_pollers():
    p = cls()
    a, b = socket.socketpair()
    b.send(b'x')
    p.set_interest(a.fileno(), True, True)
    got = dict((fd, (r, w)) for fd, r, w in p.poll(1.0))
    assert got == {a.fileno(): (True, True)}, (cls.name, got)
    b.close()
    assert p.poll(1.0)[0][1] is True
    p.close()
    print(cls.name)
"""


@pytest.mark.parametrize("version", ["2.7", "3.6"])
def test_backends_on_old_interpreters(version):
    python = find_interpreters().get(version)
    assert python, f"Python {version} not found: install it with pyenv (pyenv install {version})"
    out = subprocess.run([python, "-c", OLD_PYTHON_CHECK], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "epoll" in out.stdout.split() and "select" in out.stdout.split()
