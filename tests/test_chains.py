"""Contexts reached through intermediaries: ssh -> sudo -> ssh, and intermediary death."""

from __future__ import annotations

import logging
import os
import pwd
import signal
import subprocess
import time

import pytest

import transport
from tests.support.processes import running_children

PY = "/usr/bin/python3"


def _chain(router, sshd):
    web = router.ssh("127.0.0.1", port=sshd.port, user="tp-nopw", python=PY,
                     ssh_options=sshd.ssh_options())
    root = router.sudo(via=web, python=PY)
    db = router.ssh("127.0.0.2", port=sshd.port, user="tp-plain", python=PY,
                    ssh_options=sshd.ssh_options(), via=root)
    return web, root, db


def test_three_hop_chain(router, sshd):
    web, root, db = _chain(router, sshd)
    assert db.call(os.getuid) == pwd.getpwnam("tp-plain").pw_uid
    assert root.call(os.getuid) == 0
    assert db.via is root and root.via is web
    # The second ssh client runs on the intermediary, not on the controller.
    ssh_children = subprocess.run(["pgrep", "-P", str(root.pid), "ssh"], capture_output=True,
                                  text=True).stdout.split()
    assert len(ssh_children) == 1
    assert db.name.startswith(web.name)


def test_many_calls_through_the_chain(router, sshd):
    _, _, db = _chain(router, sshd)
    futures = [db.call_async(pow, 2, i) for i in range(100)]
    assert [f.result(timeout=30) for f in futures] == [2 ** i for i in range(100)]


def test_killing_an_intermediary_fails_everything_behind_it(router, sshd):
    web, root, db = _chain(router, sshd)
    pending = db.call_async(time.sleep, 60)
    os.kill(root.pid, signal.SIGKILL)  # we are root: the sudo context's interpreter
    with pytest.raises(transport.Disconnected) as info:  # not Timeout: the loss is reported
        pending.result(timeout=30)
    # Explained by the intermediary that saw it (its sudo process took its child's end),
    # as the loss of the intermediary db was behind (it read as db's own).
    assert str(info.value) == (f"{db.name}: disconnected: its intermediary {root.name} was "
                               "lost: sudo killed by signal 9 (SIGKILL)")
    with pytest.raises(transport.Disconnected) as info:
        db.call(pow, 1, 1)
    assert str(info.value) == (f"{db.name}: disconnected: its intermediary {root.name} was "
                               "lost: sudo killed by signal 9 (SIGKILL)")
    deadline = time.monotonic() + 30
    while (root.alive or db.alive) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not root.alive and not db.alive
    assert web.alive and web.call(pow, 2, 2) == 4
    with pytest.raises(transport.Disconnected):
        db.call(pow, 1, 1)
    with pytest.raises(transport.ConnectError, match="disconnected"):
        router.sudo(via=root, python=PY)


@pytest.mark.parametrize("killed", [0, 1])
def test_contexts_behind_a_lost_intermediary_name_it(router, killed):
    # They were given its reason as their own ("python killed by signal 9"), so the
    # user looked at the wrong hop.
    chain = [router.local(python=PY, name="hop0")]
    for number in (1, 2, 3):
        chain.append(router.local(python=PY, via=chain[-1], name=f"hop{number}"))
    pending = chain[3].call_async(time.sleep, 60)
    os.kill(chain[killed].pid, signal.SIGKILL)
    with pytest.raises(transport.Disconnected) as info:
        pending.result(timeout=30)
    lost = chain[killed]
    own = "python3 killed by signal 9 (SIGKILL)"
    assert info.value.reason == f"its intermediary {lost.name} was lost: {own}"
    for ctx in chain[killed + 1:]:
        with pytest.raises(transport.Disconnected) as info:
            ctx.call(pow, 1, 1)
        assert info.value.reason == f"its intermediary {lost.name} was lost: {own}"
    with pytest.raises(transport.Disconnected) as info:
        lost.call(pow, 1, 1)
    assert info.value.reason == own
    assert all(ctx.alive for ctx in chain[:killed])


def test_a_failed_connect_through_an_intermediary_names_the_cause(router, sshd):
    web = router.ssh("127.0.0.1", port=sshd.port, user="tp-nopw", python=PY,
                     ssh_options=sshd.ssh_options())
    with pytest.raises(transport.ConnectError) as info:
        router.ssh("127.0.0.3", port=sshd.port, user="tp-plain", python="/usr/bin/python9",
                   ssh_options=sshd.ssh_options(), via=web)
    # tp-nopw cannot read root's client key, so ssh refuses before python matters.
    assert info.value.host.startswith(web.name)
    assert web.call(pow, 3, 3) == 27


def test_connecting_through_an_intermediary_busy_with_a_long_call(router):
    inter = router.local(python=PY, name="busy")
    inter.call_async(time.sleep, 600)  # it has not been sent the spawn module yet
    child = router.local(via=inter, python=PY, connect_timeout=30)
    assert child.call(pow, 2, 3) == 8 and child.name.startswith("busy")


@pytest.mark.parametrize("label", ["2.7", "3.6"])
def test_an_intermediary_under_the_c_locale_starts_a_child_from_a_non_ascii_path(
        router, label, tmp_path, monkeypatch):
    # Python 2.7 and 3.6 under the C locale take only ASCII for a program's arguments;
    # the child's command line (its interpreter here, a key file for ssh) goes as UTF-8.
    from tests.support.interpreters import find_interpreters

    monkeypatch.setenv("LC_ALL", "C")
    monkeypatch.setenv("LANG", "C")
    inter = router.local(python=find_interpreters()[label])
    python = tmp_path / "d\u00e9p\u00f4t-python3"
    python.symlink_to(PY)
    child = router.local(via=inter, python=str(python))
    assert child.call(os.getpid) != inter.call(os.getpid)


def test_a_python_3_child_imports_what_a_2_7_intermediary_holds(router, tmp_path):
    # The 2.7 intermediary caches the module's source as its native str, which reaches
    # a Python 3 child as text: it is compiled all the same (it was a failed decode()).
    import importlib

    from tests.support.interpreters import find_interpreters
    from tests.support.packages import importable_tree

    files = {"chained/__init__.py": "",
             "chained/first.py": "# -*- coding: utf-8 -*-\nNAME = u'caf\u00e9'\n",
             "chainuser.py": "import importlib\n\n"
                             "def name(module):\n"
                             "    return importlib.import_module(module).NAME\n"}
    with importable_tree(tmp_path, files, "chain"):
        user = importlib.import_module("chainuser")
        inter = router.local(python=find_interpreters()["2.7"])
        child = router.local(via=inter, python=PY)
        assert inter.call(user.name, "chained.first") == "caf\u00e9"  # now held there
        assert child.call(user.name, "chained.first") == "caf\u00e9"


@pytest.mark.parametrize("label", ["2.7", "3.6"])
def test_an_intermediary_explains_a_childs_end_in_its_non_ascii_words(router, label):
    from tests import remote_functions as rf
    from tests.support.interpreters import find_interpreters

    inter = router.local(python=find_interpreters()[label])
    child = router.local(via=inter, python=PY)
    with pytest.raises(transport.Disconnected) as info:
        child.call(rf.exit_hard, 3, "ValueError: caf\u00e9 \x1b[31m\n")
    assert str(info.value) == (f"{child.name}: disconnected: python3 exited with status 3: "
                               "ValueError: caf\u00e9 ?[31m")
    assert inter.call(pow, 2, 3) == 8


def test_closing_the_router_lets_a_command_behind_an_intermediary_finish(tmp_path):
    # As for a context reached directly: the command has the close's timeout to end, and
    # only then is the intermediary told to exit (which would cut it off at once).
    import threading

    from tests.support.processes import written_text

    started, finished = tmp_path / "started", tmp_path / "finished"
    router = transport.Router()
    child = router.local(via=router.local(python=PY), python=PY)
    results = []
    running = threading.Thread(target=lambda: results.append(child.run(
        f"echo yes > {started}; sleep 1; echo yes > {finished}").exit_code))
    running.start()
    assert written_text(started) == "yes\n"
    router.close(timeout=30)
    running.join(30)
    assert results == [0] and finished.read_text() == "yes\n"


def test_a_child_an_intermediary_cannot_start_fails_with_the_cause(router):
    # Not an OSError from the spawn (a NUL in an argument): the cause comes back at once,
    # not as "no answer" at the connect timeout.
    inter = router.local(python=PY)
    with pytest.raises(transport.ConnectError, match="cannot start .*: ValueError: embedded null"):
        router.local(via=inter, python=PY + "\0", connect_timeout=10)
    assert inter.call(pow, 2, 3) == 8


@pytest.mark.parametrize("label", ["2.7", "3.6"])
def test_an_intermediary_relays_a_childs_non_ascii_stderr(router, caplog, label,
                                                          monkeypatch):
    # On 2.7, and on 3.6 under the C locale (whose stderr would escape it), as written.
    from tests.support.interpreters import find_interpreters

    monkeypatch.setenv("LC_ALL", "C")
    monkeypatch.setenv("LANG", "C")
    inter = router.local(python=find_interpreters()[label])
    child = router.local(via=inter, python=PY, name="child")
    with caplog.at_level(logging.INFO, logger="transport.stderr"):
        child.call(os.write, 2, "caf\u00e9 on stderr\n".encode())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                "[child] caf\u00e9 on stderr" in r.getMessage() for r in caplog.records):
            time.sleep(0.05)
    assert any("[child] caf\u00e9 on stderr" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]
    assert not any("UnicodeDecodeError" in r.getMessage() for r in caplog.records)


def _hold_up_the_router_thread(seconds):
    from transport.core import dispatch

    dispatch.current.router.broker.defer(time.sleep, seconds)


def test_a_child_that_starts_after_the_controller_gave_up_is_shut_down(router, tmp_path):
    # The intermediary answers CONNECT after the controller's wait (its router thread is
    # held up here; a stalled link did it in CI). The connect has failed for the caller,
    # so nobody will use that child: it must not run on until the intermediary ends.
    inter = router.local(python=PY, name="slow")
    lingering = tmp_path / "python"  # stays a second after the interpreter, to be seen
    lingering.write_text(f'#!/bin/sh\n{PY} "$@"\nsleep 1\n')
    lingering.chmod(0o755)
    inter.call(_hold_up_the_router_thread, 10)
    with pytest.raises(transport.ConnectError, match="no answer within 8"):
        router.local(via=inter, python=str(lingering), connect_timeout=3)
    deadline = time.monotonic() + 60
    while not running_children(inter.pid):
        assert time.monotonic() < deadline, "the intermediary never started the child"
        time.sleep(0.01)
    while running_children(inter.pid):
        assert time.monotonic() < deadline, "the child started too late is still running"
        time.sleep(0.05)
    assert inter.call(pow, 2, 5) == 32  # the intermediary goes on
