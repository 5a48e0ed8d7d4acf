"""Booting targets: small pipes, non-blocking stdin, bad interpreters, orphans, versions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import transport
from tests import remote_functions as rf
from tests.support.interpreters import find_interpreters, install_hint, missing_required
from tests.support.processes import alive, wait_gone, written_text
from transport.bootstrap import build, byte_code_tag, strip_source
from transport.controller import _target_key
from transport.core.spawn import GARBLED_HEADER
from transport.known_targets import remember_tag, remembered_tag
from transport.methods.local import LocalMethod


def _wrapper(tmp_path, name, body):
    """An executable that adjusts its stdio, then execs the real interpreter with its args."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body) + textwrap.dedent(f"""
        import os, sys
        os.execv({sys.executable!r}, [{sys.executable!r}] + sys.argv[1:])
    """))
    path.chmod(0o755)
    return str(path)


def test_payload_is_small():
    assert len(build().payload) <= 16 * 1024


def test_stripped_source_keeps_every_line_and_every_body():
    source = textwrap.dedent('''\
        """The module's docstring."""
        from __future__ import absolute_import
        # a comment
        def only_a_docstring():
            """Its whole body."""

        def docstring_then_code():
            """Not needed for the body."""
            # why
            return 2

        class Empty(Exception):
            """Its whole body."""
        def last(): return 3
    ''')
    stripped = strip_source(source).split("\n")
    assert len(stripped) == len(source.split("\n"))  # remote tracebacks stay true
    assert not any('"' in line or "#" in line for line in stripped)
    assert stripped[4].strip() == "0" and stripped[12].strip() == "0"  # bodies kept
    assert stripped[7] == "" and stripped[9].strip() == "return 2"
    namespace: dict = {}
    exec(compile("\n".join(stripped), "<stripped>", "exec"), namespace)
    assert namespace["only_a_docstring"]() is None
    assert namespace["docstring_then_code"]() == 2 and namespace["last"]() == 3


def test_boot_through_4_kib_pipes(router, tmp_path):
    # The kernel hands out one-page pipes to a user over pipe-user-pages-soft; here
    # the controller makes all three pipes that small, and the child checks it.
    python = _wrapper(tmp_path, "small-pipes", """
        import fcntl
        for fd in (0, 1, 2):
            if fcntl.fcntl(fd, 1032) != 4096:   # F_GETPIPE_SZ
                raise SystemExit("fd %d is not a 4 KiB pipe" % fd)
    """)
    assert len(build().payload) > 4096  # the payload cannot fit the pipe at once
    method = LocalMethod(python)
    ctx = router._connect(method, method.default_name(), 30.0, pipe_size=4096)
    assert ctx.call(rf.length, b"y" * 1_000_000) == 1_000_000
    assert len(ctx.call(rf.make_bytes, 1_000_000)) == 1_000_000


@pytest.mark.parametrize("eaten", [7, 41, 5000, "all"])
def test_a_target_that_reads_its_stdin_first_is_named_as_the_cause(router, tmp_path, eaten):
    # As a ~/.bashrc running a command that reads input does, on the way to Python.
    eat = ("os.close(0); os.open(os.devnull, os.O_RDONLY)" if eaten == "all"
           else f"os.read(0, {eaten})")
    python = _wrapper(tmp_path, "eats-stdin", f"import os\n{eat}\n")
    with pytest.raises(transport.ConnectError) as info:
        router.local(python=python)
    assert "The bootstrap reached Python garbled or cut short: something on the target " \
           "read from its stdin first" in str(info.value)
    # What the first stage then did depends on the bytes it took for the payload's header:
    # it failed on them, or (they split into three words) asked for source, which it had.
    assert ("before the interpreter started" in str(info.value)
            or GARBLED_HEADER in str(info.value)), str(info.value)


def test_a_header_that_is_not_ours_is_named_as_a_garbled_bootstrap(router, tmp_path):
    # Three words where the payload's header should be: the first stage, sent source, asks
    # for source; the interpreter is not to blame for byte code it was never sent.
    python = _wrapper(tmp_path, "other-stdin", """
        import os
        r, w = os.pipe()
        os.write(w, b"1 1 not-a-tag".ljust(40))
        os.close(w)
        os.dup2(r, 0)
    """)
    with pytest.raises(transport.ConnectError) as info:
        router.local(python=python)
    assert GARBLED_HEADER in str(info.value)
    assert "The bootstrap reached Python garbled or cut short" in str(info.value)
    assert "byte code" not in str(info.value)


def _connect_local(router, python, pipe_size=None):
    method = LocalMethod(python)
    return router._connect(method, method.default_name(), 30.0, pipe_size=pipe_size)


def test_byte_code_once_the_target_is_known_to_run_this_interpreters_tag(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # Another path to this interpreter: the controller cannot tell until the first hello.
    python = _wrapper(tmp_path, "same-python", "")
    with transport.Router() as router:
        assert router.local(python=python).call(rf.core_payload_kinds) == ["s"]
        assert router.local(python=python).call(rf.core_payload_kinds) == ["c"]
    with transport.Router() as router:  # a later run remembers it too
        assert router.local(python=python).call(rf.core_payload_kinds) == ["c"]


def test_a_target_that_changed_interpreter_gets_source_after_refusing_byte_code(
        tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    older = INTERPRETERS.get("3.6") or pytest.fail(install_hint(["3.6"]))
    # Remembered wrong: as if the host's python had been this interpreter last time.
    path = tmp_path / "upgraded-python"
    path.write_text(f"#!/bin/sh\nexec {older} \"$@\"\n")
    path.chmod(0o755)
    key = _target_key(LocalMethod(str(path)), None)
    remember_tag(key, byte_code_tag())
    with transport.Router() as router:
        # 4 KiB pipes: the refused byte code is read and dropped, never left in a pipe.
        ctx = _connect_local(router, str(path), pipe_size=4096)
        assert ctx.python_version.startswith("3.6.")
        assert ctx.call(rf.core_payload_kinds) == ["s"]
        assert ctx.call(rf.length, b"y" * 100_000) == 100_000
    assert remembered_tag(key) not in (None, byte_code_tag())


def test_boot_with_non_blocking_stdin(router, tmp_path):
    python = _wrapper(tmp_path, "nonblocking-stdin", """
        import fcntl, os
        fcntl.fcntl(0, fcntl.F_SETFL, fcntl.fcntl(0, fcntl.F_GETFL) | os.O_NONBLOCK)
    """)
    assert router.local(python=python).call(pow, 2, 3) == 8


def test_login_noise_before_the_stream_is_skipped(router, tmp_path):
    python = _wrapper(tmp_path, "noisy", """
        import os
        os.write(1, b"Welcome! Last login: yesterday\\n")
    """)
    assert router.local(python=python).call(pow, 2, 4) == 16


def test_missing_interpreter_is_a_connect_error_naming_the_path(router):
    with pytest.raises(transport.ConnectError) as info:
        router.local(python="/nonexistent/python3.99")
    assert "/nonexistent/python3.99" in str(info.value)
    assert info.value.host == "local:/nonexistent/python3.99"


def _failing_start(router, tmp_path, said, status):
    """The ConnectError of an 'interpreter' that writes said on stderr and exits."""
    script = tmp_path / "broken-python"
    script.write_text(f"#!/bin/sh\nprintf '{said}\\n' >&2\nexit {status}\n")
    script.chmod(0o755)
    with pytest.raises(transport.ConnectError) as info:
        router.local(python=str(script))
    return str(info.value)


def test_interpreter_that_exits_at_once_is_a_connect_error(router, tmp_path):
    error = _failing_start(router, tmp_path, "broken: cannot start", 3)
    assert "exited with status 3" in error
    assert "broken: cannot start" in error


def test_a_failed_start_shows_no_escape_sequence_the_target_wrote(router, tmp_path):
    error = _failing_start(router, tmp_path, "banner\\033]0;pwned\\007\\033[2J", 1)
    assert error.endswith("banner?]0;pwned??[2J")


def test_an_interpreter_killed_while_it_boots_is_not_called_a_wrong_program(router, tmp_path):
    # It was "exited at once ... without running the bootstrap: is it a Python interpreter?"
    script = tmp_path / "python-killed-booting"
    script.write_text("#!/bin/sh\nprintf '\\n\\000tp-first-stage\\000\\n'\nkill -9 $$\n")
    script.chmod(0o755)
    with pytest.raises(transport.ConnectError) as info:
        router.local(python=str(script))
    assert str(info.value) == (f"local:{script}: '{script}' started, then killed by signal 9 "
                               "(SIGKILL) before it was ready")


def test_interpreter_that_never_boots_times_out(router, tmp_path):
    script = tmp_path / "hanging-python"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    with pytest.raises(transport.ConnectError, match="timed out"):
        router.local(python=str(script), connect_timeout=0.5)


def test_closing_the_router_fails_a_connect_in_progress_at_once(tmp_path):
    import threading

    script = tmp_path / "hanging-python"
    script.write_text("#!/bin/sh\necho $$ > " + str(tmp_path / "pid") + "\nexec sleep 600\n")
    script.chmod(0o755)
    router = transport.Router()
    errors = []

    def connect():
        try:
            router.local(python=str(script), connect_timeout=600)
        except transport.ConnectError as e:
            errors.append(e)

    connecting = threading.Thread(target=connect)
    connecting.start()
    pid = int(written_text(tmp_path / "pid"))
    router.close()
    connecting.join(60)  # not the connect timeout's 600 s
    assert not connecting.is_alive() and "the router is closed" in str(errors[0])
    assert wait_gone(pid)  # and the process is killed


ORPHAN_SCRIPT = """
import sys, transport
from tests import remote_functions as rf
router = transport.Router()
ctx = router.local()
future = ctx.call_async(rf.sleep_then_return, 600, None) if sys.argv[1] == "busy" else None
print(ctx.pid, flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_target_exits_when_its_parent_is_killed(state):
    controller = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, state],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        target_pid = int(controller.stdout.readline())
        assert alive(target_pid)
        controller.send_signal(signal.SIGKILL)
        controller.wait(5)
        # A busy orphan would last the call's 600 s.
        assert wait_gone(target_pid, 30), "the target outlived its parent"
    finally:
        controller.kill()
        controller.wait()


INTERPRETERS = find_interpreters()


def test_required_interpreters_are_installed():
    missing = missing_required()
    assert not missing, install_hint(missing)


@pytest.mark.parametrize("label", sorted(INTERPRETERS))
def test_call_on_every_interpreter(router, label):
    python = INTERPRETERS[label]
    ctx = router.local(python=python)
    version = ctx.call(rf.version)
    assert ctx.python_version == ".".join(map(str, version))
    if label != "system":
        assert ctx.python_version.startswith(label + ".")
    # Python 2 has no separate bytes type: its str comes back as the caller's str.
    echoed_bytes = "bytes" if label == "2.7" else b"bytes"
    assert ctx.call(rf.echo, "text", b"bytes", 2**70, k={"x": (1.5, None)}) == [
        ["text", echoed_bytes, 2**70], {"k": {"x": (1.5, None)}}]
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(rf.fail, "boom")
    assert info.value.remote_type in ("ValueError", "exceptions.ValueError")
    assert "boom" in info.value.remote_traceback
    # A runaway recursion's frames are folded, as Python 3 does, on 2.7 too.
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(rf.recurse, 0)
    assert info.value.remote_traceback.count("in recurse") == 3
    assert "[Previous line repeated" in info.value.remote_traceback
    # A struct sequence comes back with its fields, a Record passed in goes back as one.
    stat = ctx.call(os.stat, "/")
    assert stat.st_size == os.stat("/").st_size and stat.st_mtime == os.stat("/").st_mtime
    assert ctx.call(rf.echo, stat) == [[stat], {}] and ctx.call(rf.echo, stat)[0][0].st_mode


def _stderr_relay_of(pid: int) -> int:
    """The process that reads the pipe on target pid's fd 1 (its stderr relay), once it
    has set itself up (it takes the pipe as its fd 0 last)."""
    pipe = os.readlink(f"/proc/{pid}/fd/1")
    assert pipe.startswith("pipe:"), pipe
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != pid:
                try:
                    if os.readlink(f"/proc/{entry}/fd/0") == pipe:
                        return int(entry)
                except OSError:
                    pass
        time.sleep(0.05)
    raise AssertionError(f"no process reads the stderr pipe of {pid}")


@pytest.mark.parametrize("label", sorted(INTERPRETERS))
def test_the_stderr_relay_ignores_interrupts_and_hang_ups(router, label):
    # (It takes the C signal module where there is one: signal.py's enum costs every boot.)
    ctx = router.local(python=INTERPRETERS[label])
    relay = _stderr_relay_of(ctx.call(os.getpid))
    with open(f"/proc/{relay}/status") as f:
        ignored = int(next(line for line in f if line.startswith("SigIgn:")).split()[1], 16)
    for signum in (signal.SIGINT, signal.SIGHUP):
        assert ignored & (1 << (signum - 1)), f"the relay does not ignore {signum.name}"
