"""Calls into a local target: values, errors, timeouts, futures and refusals."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import subprocess
import sys
import time
import traceback

import pytest

import transport
from tests import remote_functions as rf
from tests.support.processes import children, running_children, wait_gone

# What a local context started with this interpreter is called in its loss reasons.
PROGRAM = os.path.basename(sys.executable)


def test_call_returns_the_remote_value(ctx):
    pid, ppid = ctx.call(rf.pid_and_ppid)
    assert pid == ctx.pid != os.getpid()
    assert ctx.call(pow, 2, 10) == 1024
    assert ctx.call(rf.echo, 1, "two", b"three", k=[None, {1: 2.5}]) == [
        [1, "two", b"three"], {"k": [None, {1: 2.5}]}]


def test_call_async_returns_a_future(ctx):
    future = ctx.call_async(pow, 2, 10)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=10) == 1024


def test_call_futures_work_with_everything_that_takes_a_future(ctx, tmp_path):
    # Our futures set up Future's state themselves (with a lighter lock): a Python
    # release that gives Future another attribute must fail here, not in a user's code.
    assert set(vars(ctx.call_async(pow, 2, 3))) - {"context"} == set(vars(concurrent.futures.Future()))
    fast = [ctx.call_async(rf.echo, i) for i in range(50)]
    go_ahead = tmp_path / "go-ahead"
    slow = ctx.call_async(rf.wait_for_path, str(go_ahead), "slow")  # calls run in order
    assert not concurrent.futures.wait(fast, timeout=60).not_done
    done, not_done = concurrent.futures.wait([slow, *fast], timeout=0.1,
                                             return_when=concurrent.futures.ALL_COMPLETED)
    assert done == set(fast) and not_done == {slow}
    go_ahead.touch()
    first = concurrent.futures.wait([slow], return_when=concurrent.futures.FIRST_COMPLETED)
    assert first.done == {slow} and slow.result() == "slow"
    called = []
    later = ctx.call_async(rf.sleep_then_return, 0.2, "later")
    assert later.running() and not later.cancel()  # sent: it runs whatever happens here
    later.add_done_callback(lambda f: called.append(f.result()))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # several threads wait on one future
        assert list(pool.map(lambda _: later.result(timeout=10), range(4))) == ["later"] * 4
    assert called == ["later"]
    assert sorted(f.result() for f in concurrent.futures.as_completed(fast, timeout=10)) == [
        [[i], {}] for i in range(50)]

    async def awaited():
        return await asyncio.wrap_future(ctx.call_async(pow, 3, 3))

    assert asyncio.run(awaited()) == 27


def test_calls_run_in_order_and_concurrent_callers_get_their_own_replies(ctx):
    futures = [ctx.call_async(rf.echo, i) for i in range(200)]
    assert [f.result(timeout=20) for f in futures] == [[[i], {}] for i in range(200)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: ctx.call(rf.echo, i), range(200)))
    assert results == [[[i], {}] for i in range(200)]


def test_timeout_raises_transport_timeout(ctx):
    future = ctx.call_async(rf.sleep_then_return, 1.0, "late")
    with pytest.raises(transport.Timeout) as info:
        future.result(timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, concurrent.futures.TimeoutError)
    assert str(info.value) == f"{ctx.name}: no reply within 0.05s"  # it names the host
    assert info.value.host == ctx.name
    with pytest.raises(transport.Timeout, match=f"^{ctx.name}: no reply within 0.05s$"):
        future.exception(timeout=0.05)
    assert future.result(timeout=10) == "late"


def test_remote_exception_carries_type_message_and_traceback(ctx):
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(rf.nested_fail)
    error = info.value
    assert error.remote_type == "ValueError"
    assert error.remote_message == "nested failure"
    assert "in nested_fail" in error.remote_traceback
    assert "in fail" in error.remote_traceback
    assert "Remote traceback" in str(error) and "nested failure" in str(error)
    assert error.host == ctx.name
    # The connection stays usable.
    assert ctx.call(pow, 3, 2) == 9


def test_missing_module_or_function_is_a_remote_error(ctx):
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(os.listdir, "/nonexistent-directory")
    assert info.value.remote_type == "FileNotFoundError"


def test_classmethods_staticmethods_and_builtins_are_sent_by_name(ctx):
    assert ctx.call(rf.Greeter.hello, "x") == "hello x"
    assert ctx.call(rf.Greeter.bye, "y") == "bye y"
    assert ctx.call(len, b"abc") == 3
    # A built-in type's classmethod is a new object at each look-up.
    assert ctx.call(int.from_bytes, b"\x01\x00", "big") == 256
    assert ctx.call(dict.fromkeys, ["a"], 1) == {"a": 1}


def test_the_called_functions_keywords_may_be_named_fn_or_self(ctx):
    assert ctx.call(rf.echo, 1, fn=2, self=3) == [[1], {"fn": 2, "self": 3}]
    assert ctx.call_async(rf.echo, fn=2).result(timeout=30) == [[], {"fn": 2}]


@pytest.mark.parametrize("python", ["/usr/bin/python3", "2.7"])
def test_functions_of_c_modules_go_by_the_module_users_import(router, python):
    # operator.add says it is _operator's, pickle.dumps _pickle's: 2.7 has neither.
    import operator
    import pickle

    from tests.support.interpreters import find_interpreters

    ctx = router.local(python=find_interpreters().get(python, python))
    assert ctx.call(operator.add, 1, 2) == 3
    assert ctx.call(pickle.loads, ctx.call(pickle.dumps, [1, "a"], 2)) == [1, "a"]
    # A built-in type's method has no module of its own.
    assert ctx.call(dict.get, {"a": 1}, "a") == 1


def test_arguments_nested_deeper_than_a_target_reads_are_refused_here(ctx):
    def nested(depth):
        value = []
        for _ in range(depth - 1):
            value = [value]
        return value

    # The deepest argument the caller sends is one the target reads: a RemoteError
    # (the target's "payload nested more than 100 deep") would fail the test.
    deepest = next(depth for depth in range(90, 110) if not _sendable(ctx, nested(depth + 1)))
    assert deepest > 90
    ctx.call(rf.ignore, nested(deepest))
    ctx.call(rf.ignore, x=nested(deepest))  # a keyword's value sits as deep
    with pytest.raises(TypeError, match="cannot send the arguments.*nested more than"):
        ctx.call(rf.ignore, x=nested(deepest + 1))


def _sendable(ctx, value):
    try:
        ctx.call(rf.ignore, value)
    except TypeError:
        return False
    return True


def test_a_remote_error_with_bytes_that_are_not_utf8_can_be_printed_anywhere(ctx):
    # An OSError's file name that is not UTF-8 (a Latin-1 name, say) reaches the message
    # as surrogate escapes, which a strict UTF-8 stream (or an ASCII one) refuses to print.
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(rf.fail, b"caf\xe9".decode("utf-8", "surrogateescape"))
    assert info.value.remote_message == "caf\udce9"  # as the target had it
    text = str(info.value)
    assert "ValueError: caf\\xe9 (on " in text
    text.encode("ascii")  # nothing a strict stream refuses


@pytest.mark.parametrize("fn, match", [
    (lambda: 1, "lambdas cannot be sent"),
    (rf.Greeter().instance_method, "bound to an instance"),
    ([].append, "bound to an instance"),
])
def test_unsendable_functions_are_refused_on_the_caller_side(ctx, fn, match):
    with pytest.raises(TypeError, match=match):
        ctx.call(fn)


def test_a_refused_method_is_named_without_its_instance(ctx):
    # The instance's repr could hold anything: os.environ's is the whole environment.
    with pytest.raises(TypeError, match="bound to an instance") as info:
        ctx.call(os.environ.copy)
    assert "os._Environ.copy" in str(info.value)
    # Nor in what a traceback of it shows (an exception it was raised while handling).
    shown = "".join(traceback.format_exception(info.type, info.value, info.tb))
    assert os.environ["PATH"] not in shown


def test_closures_are_refused(ctx):
    value = 3

    def closure():
        return value

    with pytest.raises(TypeError, match="inside a function"):
        ctx.call(closure)


def test_unencodable_arguments_are_refused(ctx):
    with pytest.raises(TypeError, match="cannot send the arguments"):
        ctx.call(rf.echo, object())


def test_object_with_evil_reduction_never_runs_on_the_controller(ctx, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(rf.return_evil, str(marker))
    assert "cannot be sent" in info.value.remote_message
    assert not marker.exists()
    assert ctx.call(pow, 2, 2) == 4


def test_a_result_the_codec_cannot_write_is_an_error_and_the_target_goes_on(ctx):
    # A lone surrogate has no UTF-8; Python 3.11+ refuses to turn an int of more than
    # 4300 digits into text. Each ended the target before.
    import json

    with pytest.raises(transport.RemoteError, match="cannot be sent.*surrogates"):
        ctx.call(json.loads, '"\\ud800"')
    with pytest.raises(transport.RemoteError, match="cannot be sent.*4300"):
        ctx.call(pow, 10, 5000)
    with pytest.raises(TypeError, match="cannot send the arguments"):
        ctx.call(rf.echo, "\ud800")
    assert ctx.call(pow, 2, 2) == 4


def test_a_result_over_the_message_size_limit_is_an_error_and_the_target_goes_on():
    # Sent, it would make the controller drop the connection as a protocol error.
    import sys

    with transport.Router(max_message_size=1024 * 1024) as router:
        ctx = router.local(python=sys.executable)
        with pytest.raises(transport.RemoteError, match="over the message size limit"):
            ctx.call(rf.make_bytes, 2 * 1024 * 1024)
        with pytest.raises(ValueError, match="over the message size limit"):
            ctx.call(rf.length, b"x" * 2 * 1024 * 1024)  # the arguments, the other way
        assert ctx.call(pow, 2, 2) == 4


def test_large_values_cross_in_both_directions(ctx):
    size = 8 * 1024 * 1024
    assert ctx.call(rf.length, b"x" * size) == size
    data = ctx.call(rf.make_bytes, size)
    assert len(data) == size and data[:2] == b"\xab\xab"


def test_stdout_noise_in_the_target_does_not_corrupt_the_stream(ctx):
    assert ctx.call(rf.print_noise, "tp\x00junk\n") == "after noise"
    assert ctx.call(pow, 2, 5) == 32


def test_a_context_that_exits_mid_call_fails_the_call_saying_why(router):
    # Its exit status and what it last said on stderr (its last line, or the last that
    # speaks of an error; control characters made harmless) explain the loss, not "end
    # of file"; what it said long before does not.
    ctx = router.local()
    ctx.call(os.write, 2, b"a warning long before: not why it ended\n")
    time.sleep(1.5)
    with pytest.raises(transport.Disconnected) as info:
        ctx.call(rf.exit_hard, 3)
    assert str(info.value) == f"{ctx.name}: disconnected: {PROGRAM} exited with status 3"
    for last_words, said in (
            ("progress 1\nprogress 2\nfatal: the disk\x1b[2J is on fire\n\nExtension "
             "modules: zlib (total: 1)\n", "fatal: the disk?[2J is on fire"),
            ("progress 1\nsh: line 1:   7 Killed\n", "sh: line 1:   7 Killed")):
        ctx = router.local()
        with pytest.raises(transport.Disconnected) as info:
            ctx.call(rf.exit_hard, 3, last_words)
        assert str(info.value) == f"{ctx.name}: disconnected: {PROGRAM} exited with status 3: {said}"
    with pytest.raises(transport.Disconnected, match="exited with status 3"):
        ctx.call(pow, 1, 1)


def test_a_call_made_while_the_loss_waits_for_its_reason_gets_that_reason(router, tmp_path):
    # The interpreter's wrapper lingers after it, its stdout closed, so the loss waits
    # (0.5 s) for an exit status that does not come; a call made meanwhile meets the
    # closed connection: it waits for the loss too, and gets its reason (it got "no
    # route to context N").
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\n{sys.executable} "$@"\nexec >&-\nsleep 5\n')
    wrapper.chmod(0o755)
    ctx = router.local(python=str(wrapper))
    ending = ctx.call_async(rf.exit_hard, 3)
    time.sleep(0.1)
    with pytest.raises(transport.Disconnected) as info:
        ctx.call(pow, 1, 1)
    assert str(info.value) == f"{ctx.name}: disconnected: end of file"
    with pytest.raises(transport.Disconnected, match="end of file$"):
        ending.result(timeout=30)


def test_a_connect_the_router_closes_under_fails_at_once():
    # Closed after the connect looked, by another thread: the connection was left to a
    # broker that had ended, and failed as timed out, connect_timeout + 5 s later.
    from transport.methods.local import LocalMethod

    router = transport.Router()

    class ClosedMeanwhile(LocalMethod):
        def argv(self, bootstrap):
            router.close()
            return super().argv(bootstrap)

    with pytest.raises(transport.ConnectError, match="the router is closed$"):
        router._connect(ClosedMeanwhile(sys.executable), None, 5.0)


def test_a_second_close_returns_once_the_router_is_closed():
    import threading

    router = transport.Router()
    ctx = router.local()
    ctx.call_async(time.sleep, 2)
    first = threading.Thread(target=router.close)
    first.start()
    deadline = time.monotonic() + 30
    while not router.closed:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    router.close()
    assert not ctx.alive
    first.join(30)


def test_a_last_stderr_line_without_a_newline_is_logged(router, caplog):
    ctx = router.local()
    with caplog.at_level(logging.INFO, logger="transport.stderr"):
        with pytest.raises(transport.Disconnected, match="status 3: no newline at the end$"):
            ctx.call(rf.exit_hard, 3, "no newline at the end")
    assert [r.getMessage() for r in caplog.records if r.name == "transport.stderr"] == [
        f"{ctx.name}: no newline at the end"]


@pytest.mark.parametrize("label", ["2.7", "3.6", "system"])
def test_a_call_prints_text_that_is_not_ascii_on_every_python(label, monkeypatch, caplog):
    # 2.7 (always) and 3.6 (under the C locale) print on a pipe in ASCII: the call failed
    # with a UnicodeEncodeError where 3.7+ printed it.
    from tests.support.interpreters import find_interpreters

    monkeypatch.setenv("LC_ALL", "C")
    monkeypatch.delenv("LANG", raising=False)
    with caplog.at_level(logging.INFO, logger="transport.stderr"):
        with transport.Router() as router:
            ctx = router.local(python=find_interpreters()[label])
            assert ctx.call(rf.print_unflushed, "caf\u00e9 out", "caf\u00e9 err") == "printed"
            ctx.shutdown()
    lines = [r.getMessage() for r in caplog.records if r.name == "transport.stderr"]
    assert f"{ctx.name}: caf\u00e9 out" in lines and f"{ctx.name}: caf\u00e9 err" in lines, lines


def test_a_script_ends_after_a_warning_logged_on_one_of_our_threads(tmp_path):
    # The script imports neither logging nor threading: the warning (as the module server
    # logs one) must not import them on that thread, which Python would then take for the
    # main one (and wait for it at exit, for ever); it is printed as logging would.
    script = tmp_path / "script.py"
    script.write_text(
        "import time\nimport transport\nfrom transport import log\n"
        "from transport.core import compat\n"
        "router = transport.Router()\n"
        "compat.start_daemon_thread(lambda: (log.warning('transport', 'warned'),\n"
        "                                   time.sleep(600)), 'ours')\n"
        "time.sleep(0.2)\nrouter.close()\nprint('closed')\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, "closed\n", "warned\n")


def test_a_killed_context_fails_pending_and_later_calls(router):
    ctx = router.local()
    pending = ctx.call_async(rf.sleep_then_return, 30, "never")
    os.kill(ctx.pid, signal.SIGKILL)
    with pytest.raises(transport.Disconnected) as info:
        pending.result(timeout=10)
    assert str(info.value) == f"{ctx.name}: disconnected: {PROGRAM} killed by signal 9 (SIGKILL)"
    with pytest.raises(transport.Disconnected, match="SIGKILL"):
        ctx.call(pow, 1, 1)
    assert not ctx.alive
    assert ctx.disconnect_reason == f"{PROGRAM} killed by signal 9 (SIGKILL)"


def test_shutdown_ends_the_process(router):
    ctx = router.local()
    pid = ctx.pid
    ctx.shutdown()
    assert not ctx.alive
    assert wait_gone(pid)
    with pytest.raises(transport.Disconnected) as info:
        ctx.call(pow, 1, 1)
    assert str(info.value) == f"{ctx.name}: disconnected: shut down"


@pytest.mark.parametrize("python", ["2.7", "3.6"])
def test_old_targets_send_what_a_new_one_would(router, python):
    # An int the caller cannot read was a ProtocolError ("malformed reply"), where a
    # 3.11 target refuses to send it; a 2.7 OrderedDict came in hash order.
    from tests.support.interpreters import find_interpreters

    ctx = router.local(python=find_interpreters()[python])
    with pytest.raises(transport.RemoteError, match="cannot be sent: an integer of more than 4300 digits"):
        ctx.call(pow, 10, 4500)
    assert list(ctx.call(rf.ordered_mapping)) == ["zeta", "alpha", "mid", "b"]
    assert ctx.call(pow, 10, 4299) == 10 ** 4299
    assert ctx.call(pow, -10, 4299) == -10 ** 4299  # 4300 digits and a sign


@pytest.mark.parametrize("python", ["/usr/bin/python3", "2.7"])
def test_a_named_tuple_keeps_its_fields_in_order(router, python):
    # From 2.7 its fields came in the order of a 2.7 dict: Entry(owner='root', mode=420, ...).
    from tests.support.interpreters import find_interpreters

    entry = router.local(python=find_interpreters().get(python, python)).call(rf.named_entry)
    assert entry == ("a", 1, "root", 420, 0) and entry.owner == "root"
    assert repr(entry) == "tests.remote_functions.Entry(name='a', size=1, owner='root', mode=420, mtime=0)"


@pytest.mark.parametrize("python", ["/usr/bin/python3", "2.7", "3.6"])
def test_shutdown_runs_exit_handlers_as_a_program_end_would(router, tmp_path, python):
    # atexit handlers (a TemporaryDirectory's clean-up, logging.shutdown, a user's own)
    # run on an orderly shutdown, a failing one does not stop the rest.
    from tests.support.interpreters import find_interpreters

    ctx = router.local(python=find_interpreters().get(python, python))
    written = tmp_path / "at-exit"
    assert ctx.call(rf.write_at_exit, str(written), "ran")
    pid = ctx.pid
    ctx.shutdown()
    assert wait_gone(pid)
    assert written.read_text() == "ran"


@pytest.mark.parametrize("python", ["3.8", "2.7"])
def test_files_in_the_current_directory_do_not_shadow_modules(router, tmp_path, python):
    # python -c puts the current directory first on sys.path; the first stage takes it off
    # before its own imports, so a select.py there (in a sudo target's home, say) neither
    # runs at boot (pyenv's select is not built in) nor stands in for a module in a call.
    from tests.support.interpreters import find_interpreters

    marker = tmp_path / "ran"
    for name in ("select", "colorsys"):
        (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write('{name} ')\n")
    previous = os.getcwd()
    os.chdir(tmp_path)  # the target's working directory
    try:
        ctx = router.local(python=find_interpreters()[python])
    finally:
        os.chdir(previous)
    origin = ctx.call(rf.import_in, str(tmp_path), "colorsys")
    assert not origin.startswith(str(tmp_path)) and "colorsys" in origin
    assert not marker.exists(), marker.read_text()


def test_messages_to_a_context_that_went_away_are_not_warned_about(router, caplog):
    from transport.core.framing import Message
    from transport.core.handles import CONTROLLER_ID, SHUTDOWN

    caplog.set_level(logging.DEBUG, logger="transport")
    ctx = router.local()
    os.kill(ctx.pid, signal.SIGKILL)
    with pytest.raises(transport.Disconnected):  # the call's own loss reaches its caller
        ctx.call(rf.sleep_then_return, 30, "never")
    # What shutdown() sends when the context dies between its alive check and the send.
    router._core.send(Message(ctx.context_id, CONTROLLER_ID, SHUTDOWN))
    deadline = time.monotonic() + 30
    while "handle=3" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert any("handle=3" in r.getMessage() for r in dropped)
    assert all(r.levelno == logging.DEBUG for r in dropped), caplog.text


def test_calls_run_on_the_main_thread_as_threading_sees_it(router):
    # The core boots without threading; an application that imports it in a call must
    # still find itself on the main thread (asyncio's signal handlers need it), and
    # the interpreter must still exit cleanly afterwards.
    ctx = router.local()
    assert ctx.call(rf.main_thread_as_applications_see_it) == (True, False)
    pid = ctx.pid
    ctx.shutdown()
    assert wait_gone(pid)


def test_router_close_ends_every_context():
    with transport.Router() as router:
        pids = [router.local().pid for _ in range(3)]
    assert all(wait_gone(pid) for pid in pids)
    with pytest.raises(transport.ConnectError, match="closed"):
        router.local()


def _zombie_children() -> set[int]:
    return {pid for pid, state in children(os.getpid()).items() if state == "Z"}


def test_a_closed_router_leaves_no_zombie_and_no_open_pipe():
    before_zombies, before_fds = _zombie_children(), set(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with transport.Router() as router:
            for _ in range(3):
                router.local().call(os.getpid)
            with pytest.raises(transport.ConnectError):
                router.local(python="/bin/false")  # its process is reaped too
    assert set(os.listdir("/proc/self/fd")) - before_fds == set()
    deadline = time.monotonic() + 10  # reaped on a thread of their own, as they end
    while _zombie_children() - before_zombies and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _zombie_children() - before_zombies == set()


def test_code_in_a_call_can_ask_a_service_the_caller_serves(ctx):
    asked = []

    def service(value):
        asked.append(value)
        if value == "secret":
            raise PermissionError("not for you")
        return {"twice": value * 2}

    handle = ctx.serve(service)
    answers = ctx.call(rf.ask_caller, handle, [2, "ab", "secret"])
    assert answers[:2] == [{"twice": 4}, {"twice": "abab"}]
    assert answers[2] == "refused: PermissionError: not for you"
    assert asked == [2, "ab", "secret"]
    assert ctx.call(rf.ask_caller, handle, [5]) == [{"twice": 10}]  # the service lasts


def test_a_process_forked_in_a_call_does_not_use_the_targets_connection(router, caplog):
    # Its import fails without asking (the answer would go to the target, or to
    # nobody), and its log records are not written into the target's stream.
    ctx = router.local(python="/usr/bin/python3")  # which has no invoke of its own
    ctx.forward_logging()
    with caplog.at_level(logging.WARNING):
        assert ctx.call(rf.fork_log_and_import, "invoke") == "ImportError"
        ctx.call(pow, 1, 1)
    assert "invoke" not in router._modules.requested.get(ctx.context_id, [])
    assert "from the fork" not in caplog.text
    assert ctx.call(rf.import_by_name, "invoke") == "invoke"  # the target itself can


def test_a_forked_controller_cannot_use_its_parents_contexts(ctx):
    def child():
        try:
            ctx.call(pow, 2, 2)
            return "called"
        except transport.TransportError as e:
            return str(e)

    outcome = rf.in_a_fork(child)
    assert "is a fork" in outcome and ctx.name in outcome
    assert ctx.call(pow, 2, 3) == 8  # the parent's context is unharmed

    def connect():  # waited its whole connect_timeout, then "timed out"
        try:
            ctx.router.local(python="/usr/bin/python3", connect_timeout=20)
            return "connected"
        except transport.TransportError as e:
            return str(e)

    assert "is a fork of the one that made the router" in rf.in_a_fork(connect)


def test_close_and_shutdown_in_a_fork_leave_the_parents_contexts_alone(router):
    ctx = router.local()

    def child():
        ctx.shutdown()  # the parent's context: not the fork's to end
        router.close()
        return "returned"

    assert rf.in_a_fork(child) == "returned"
    assert ctx.call(os.getpid) == ctx.pid  # still there, still answering
    assert router.local().call(pow, 2, 3) == 8  # and the router still connects


def test_a_service_that_exits_is_an_error_for_its_asker_and_the_router_goes_on(ctx):
    import sys

    handle = ctx.serve(lambda value: sys.exit(f"leaving over {value}"))
    answers = ctx.call(rf.ask_caller, handle, ["this"])
    assert answers == ["refused: SystemExit: leaving over this"]
    assert ctx.call(pow, 2, 5) == 32


def test_calls_waiting_when_the_broker_stops_fail_instead_of_hanging(router):
    ctx = router.local()
    pending = ctx.call_async(rf.sleep_then_return, 600, None)
    router._broker.defer(router._broker.stop)  # as if the loop had failed
    with pytest.raises(transport.Disconnected):
        pending.result(timeout=60)
    with pytest.raises(transport.TransportError):
        ctx.call(pow, 1, 1)
    with pytest.raises(transport.ConnectError, match="closed"):
        router.local()


def test_waiting_on_the_routers_own_thread_is_refused_not_a_deadlock(ctx, tmp_path):
    seen = []

    def on_done(future):
        try:
            ctx.call(pow, 2, 2)
        except transport.TransportError as e:
            seen.append(str(e))

    first = ctx.call_async(rf.sleep_then_return, 0.5, 2)  # done later, on the router's thread
    first.add_done_callback(on_done)
    assert first.result(timeout=30) == 2
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen and "router's own thread" in seen[0]
    handle = ctx.serve(lambda value: ctx.call(pow, value, 2))
    assert "router's own thread" in ctx.call(rf.ask_caller, handle, [3])[0]
    connect = ctx.serve(lambda value: ctx.router.local(python="/usr/bin/python3").pid)
    assert "router's own thread" in ctx.call(rf.ask_caller, connect, [None])[0]
    # Those that waited there froze every context: a get for its 120 s, a command's
    # input and a group for ever.
    get = ctx.serve(lambda value: ctx.get("/etc/hostname", value))
    assert "router's own thread" in ctx.call(rf.ask_caller, get, [str(tmp_path / "got")])[0]
    for end in ("write", "close_input"):
        feed = ctx.serve(lambda value: getattr(ctx.start("cat >/dev/null"), value)(
            *([b"x"] if value == "write" else [])))
        assert "router's own thread" in ctx.call(rf.ask_caller, feed, [end])[0], end
    group = ctx.serve(lambda value: transport.Group(ctx.router, [value]).call(pow, 2, 2))
    assert "a group cannot run on the router's own thread" in ctx.call(
        rf.ask_caller, group, ["web1.invalid"])[0]
    assert ctx.call(pow, 2, 3) == 8


def test_adapter_targets_open_contexts_of_their_own_in_a_fork():
    from adapters.targets import Targets

    targets = Targets()
    try:
        parents = targets.local("/usr/bin/python3")

        def child():
            ctx = targets.local("/usr/bin/python3")
            answer = f"{ctx.pid} {ctx.call(os.getpid)}"
            targets.close()
            return answer

        answer = rf.in_a_fork(child).split()
        assert answer[0] == answer[1] and int(answer[0]) != parents.pid
        assert parents.call(os.getpid) == parents.pid  # the fork left the parent's alone
    finally:
        targets.close()


@pytest.mark.parametrize("python", ["/usr/bin/python3", "2.7"])
def test_what_a_call_leaves_behind_does_not_end_the_target(router, python):
    # An exception raised between calls (a signal handler a call armed), a call that
    # forks and returns in the child, an emptied sys.path before an error, a value
    # whose iteration fails: each is that call's error at most, and the target goes on.
    from tests.support.interpreters import find_interpreters

    ctx = router.local(python=find_interpreters().get(python, python))
    assert ctx.call(rf.raise_from_a_signal_handler_later, 1)
    time.sleep(1.5)
    assert ctx.call(pow, 2, 3) == 8
    child = ctx.call(os.fork)
    if child:  # the parent's answer; the child, back in the call loop, exits at once
        assert wait_gone(child)
    # ... with the status Python would have ended it with.
    assert [ctx.call(rf.fork_and_end_the_child, how) for how in ("return", "raise", 3)] == [
        0, 1, 3]
    assert ctx.call(rf.empty_sys_path)
    with pytest.raises(transport.RemoteError, match="nested failure"):
        ctx.call(rf.nested_fail)
    with pytest.raises(transport.RemoteError, match="cannot be sent.*changed size"):
        ctx.call(rf.changing_list)
    assert ctx.call(pow, 2, 4) == 16


def test_a_str_enum_travels_as_its_text_both_ways(ctx):
    import enum

    class Color(str, enum.Enum):
        RED = "red"

    assert ctx.call(rf.echo, Color.RED, b"x") == [["red", b"x"], {}]

    class Markup(str):  # as markupsafe's: its slices are of its own type
        def __getitem__(self, index):
            return Markup(str.__getitem__(self, index))

    assert ctx.call(rf.echo, Markup("<b>x</b>")) == [["<b>x</b>"], {}]


def test_a_handler_a_call_installed_may_end_the_target_between_calls(router):
    import signal

    ctx = router.local(python="/usr/bin/python3")
    assert ctx.call(rf.exit_on_sigterm)
    os.kill(ctx.pid, signal.SIGTERM)
    assert wait_gone(ctx.pid), "SystemExit from the handler did not end the target"


def _interrupt_a_slow_connect(router, tmp_path, via=None):
    """Connect to an interpreter that takes a second to start, with Ctrl-C after 0.3 s."""
    slow = tmp_path / "slow-python"
    slow.write_text(f"#!/bin/sh\nsleep 1\nexec {sys.executable} \"$@\"\n")
    slow.chmod(0o755)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            router.local(python=str(slow), via=via)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_an_interrupted_connect_leaves_no_interpreter_behind(router, tmp_path):
    before = running_children(os.getpid())
    _interrupt_a_slow_connect(router, tmp_path)
    deadline = time.monotonic() + 10
    while running_children(os.getpid()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running_children(os.getpid()) - before == set()
    assert router.contexts() == []
    assert not router._lost_early  # nothing kept of it either


def test_an_interrupted_connect_through_an_intermediary_leaves_nothing_there(router, tmp_path):
    inter = router.local(name="intermediary")
    _interrupt_a_slow_connect(router, tmp_path, via=inter)  # while it boots there

    def children_there():
        return subprocess.run(["pgrep", "-P", str(inter.pid)], capture_output=True,
                              text=True).stdout.split()

    deadline = time.monotonic() + 15
    while children_there() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children_there() == []  # it booted after all, and was shut down
    assert [c.name for c in router.contexts()] == ["intermediary"]
    assert not router._lost_early  # nothing kept of it either


def test_failed_connections_are_forgotten_once_reaped(router, tmp_path):
    from transport.core import spawn

    lingering = tmp_path / "closes-stdout-and-lingers"
    lingering.write_text("#!/bin/sh\nexec 1>&-\nsleep 1.5\n")  # outlives the failure's timer
    lingering.chmod(0o755)
    for _ in range(3):
        with pytest.raises(transport.ConnectError):
            router.local(python=str(lingering))
    deadline = time.monotonic() + 15
    while spawn._unreaped.get(router._broker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not spawn._unreaped.get(router._broker)  # a long-running controller keeps none


MANY_CONTEXTS = """
import os, resource, sys
import transport

with transport.Router() as router:
    hop = router.local(python="/usr/bin/python3") if sys.argv[1] == "via" else None
    contexts = [router.local(python="/usr/bin/python3", via=hop) for _ in range(100)]
    limits = hop.call(resource.getrlimit, resource.RLIMIT_NOFILE) if hop else \
        resource.getrlimit(resource.RLIMIT_NOFILE)
    print(len({ctx.call(os.getpid) for ctx in contexts}), limits[0])
"""


@pytest.mark.parametrize("hard", ["as it is", 420])
@pytest.mark.parametrize("where", ["here", "via"])
def test_many_contexts_fit_under_a_low_soft_limit_on_open_files(hard, where):
    # Each context holds its pipes in the process that started it (this one, or an
    # intermediary): under a soft `ulimit -n` of 256 (1024 is common: ~300 hosts) the
    # 80th failed with "Too many open files". The soft limit is raised as far as needed,
    # never above the hard one.
    import resource

    if hard == "as it is":
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        assert hard >= 864, f"the hard limit on open files here ({hard}) is too low for this test"

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    out = subprocess.run([sys.executable, "-c", MANY_CONTEXTS, where], capture_output=True,
                         text=True, timeout=240, preexec_fn=low_limit)
    assert out.returncode == 0, out.stderr
    # 8 files a child (the paramiko backend's hold 7: room for 4 ran out near 130 hosts).
    assert out.stdout.split() == ["100", str(min(864, hard))]
