"""Context.run: exit codes, output streaming, input, env, cwd, timeouts, check."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import transport
from tests.support.interpreters import find_interpreters
from tests.support.processes import wait_gone, written_text
from transport.core import codec

PY = "/usr/bin/python3"
INTERPRETERS = find_interpreters()


@pytest.fixture
def target(router):
    return router.local(python=PY)


def test_exit_code_and_output(target):
    result = target.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert not result.ok
    assert result.text() == "out\n" and result.text("stderr") == "err\n"


@pytest.mark.parametrize("env, error, words", [
    ({"": "x"}, ValueError, "env: '' is not a variable name (it is empty or holds '=' or NUL)"),
    ({"A=B": "x"}, ValueError, "env: 'A=B' is not a variable name"),
    ({3: "x"}, TypeError, "env names are str, not int"),
    ({"PORT": 8080}, TypeError, "env['PORT'] is int: values are str or bytes (None unsets"),
    ({"TOKEN": "s3cret\0"}, ValueError, "env['TOKEN'] holds a NUL character"),
    (["X=1"], TypeError, "env must be a dict of names to values, not list"),
])
def test_a_bad_environment_is_refused_here_the_same_for_every_target(router, env, error, words):
    # Targets disagreed (3.11 ran a command with an empty name, 2.7 refused it), and
    # said so as a RemoteError; a value is never shown (it may be a secret).
    for python in (PY, INTERPRETERS["2.7"]):
        context = router.local(python=python)
        with pytest.raises(error) as info:
            context.run("true", env=env)
        assert words in str(info.value) and "s3cret" not in str(info.value)
        with pytest.raises(error):
            context.set_baseline(env=env)
        assert context.run("echo $X", env={"X": b"bytes"}).stdout == b"bytes\n"
        context.set_baseline(env={"X": b"baseline bytes"})
        assert context.run("echo $X").stdout == b"baseline bytes\n"


@pytest.mark.parametrize("arguments, error, words", [
    ({"cmd": None}, TypeError, "the command is a str or a list of words, not NoneType"),
    ({"cmd": ["ls", 3]}, TypeError, "the command's words are str or bytes, not int"),
    ({"cmd": []}, ValueError, "the command is an empty list: name a program"),
    ({"cmd": "true", "timeout": "5"}, TypeError, "timeout is a number of seconds, not str"),
    ({"cmd": "true", "timeout": -1}, ValueError, "timeout is a number of seconds, not -1"),
    ({"cmd": "cat", "input": 123}, TypeError, "input is bytes or str, not int"),
    ({"cmd": "pwd", "cwd": 3}, TypeError, "cwd is a str or bytes path, not int"),
])
def test_bad_command_arguments_are_refused_before_anything_runs(target, arguments, error, words):
    # They were RemoteErrors from deep in subprocess, or (a str timeout) a TypeError
    # raised here after the command had started on the target.
    for method in (target.run, target.start):
        if method == target.start and "input" in arguments:
            continue
        with pytest.raises(error) as info:
            method(**arguments)
        assert str(info.value) == words
    assert target.call(pow, 2, 5) == 32  # and nothing was left waiting


def test_a_list_runs_without_a_shell(target):
    result = target.run(["printf", "%s|", "a b", "$HOME"])
    assert result.stdout == b"a b|$HOME|"


@pytest.mark.parametrize("label", ["2.7", "3.6", "3.13"])
def test_what_a_command_could_not_start_with_is_named_once(router, label):
    # 2.7 named nothing ("[Errno 2] No such file or directory"), 3.6 the program twice.
    target = router.local(python=INTERPRETERS[label])
    for words, cwd, named in ((["/no/such-program", "a"], None, "/no/such-program"),
                              (["true"], "/no/such-directory", "/no/such-directory")):
        with pytest.raises(transport.RemoteError) as info:
            target.run(words, cwd=cwd)
        assert info.value.remote_message == f"[Errno 2] No such file or directory: '{named}'"
        assert "During handling" not in info.value.remote_traceback


@pytest.mark.parametrize("label", ["2.7", "3.13"])
@pytest.mark.parametrize("pty", [False, True])
def test_a_script_without_an_interpreter_line_runs_as_a_shell_script(router, tmp_path, label, pty):
    # As execvp, env and ssh run it; subprocess raised "Exec format error" (ENOEXEC).
    script = tmp_path / "no-hash-bang"
    script.write_text('echo "ran with $# words: $1"\n')
    script.chmod(0o755)
    target = router.local(python=INTERPRETERS[label])
    result = target.run([str(script), "a b"], pty=pty)
    assert (result.exit_code, result.stdout.strip()) == (0, b"ran with 1 words: a b")
    # A file no shell can read as a script fails as a shell's exec does: 126, and why.
    binary = tmp_path / "not-a-program"
    binary.write_bytes(b"\x7fELF\x00\x01garbage")
    binary.chmod(0o755)
    result = target.run([str(binary)])
    assert result.exit_code == 126 and b"Exec format error" in result.stderr, result


def test_words_and_cwd_may_be_pathlib_paths(target, tmp_path):
    # As subprocess takes them; they could not be sent ("cannot encode ... PosixPath").
    (tmp_path / "file").write_text("in a path\n")
    result = target.run([Path("/bin/cat"), Path("file")], cwd=tmp_path)
    assert result.stdout == b"in a path\n"
    assert target.set_baseline(cwd=tmp_path) == str(tmp_path)


def test_input_env_and_cwd(target):
    assert target.run("cat", input=b"fed in").stdout == b"fed in"
    assert target.run("echo $TP_VAR", env={"TP_VAR": "set"}).stdout == b"set\n"
    assert target.run("pwd", cwd="/tmp").stdout == b"/tmp\n"
    # A home at its start, as a shell's cd takes it (it was a directory named "~").
    home = target.call(os.path.expanduser, "~")
    assert target.run("pwd", cwd="~").stdout == home.encode() + b"\n"
    assert target.run(["pwd"], cwd="~root").stdout == b"/root\n"
    assert target.run("echo ${HOME:-unset}", env={"HOME": None}).stdout == b"unset\n"
    # replace_env: env is the whole environment (none at all without env).
    assert target.run(["/usr/bin/env"], env={"TP_VAR": "alone"},
                      replace_env=True).stdout == b"TP_VAR=alone\n"
    assert target.run(["/usr/bin/env"], replace_env=True).stdout == b""


@pytest.mark.parametrize("label", sorted(INTERPRETERS))
def test_commands_and_pty_on_every_interpreter(router, label):
    target = router.local(python=INTERPRETERS[label])
    result = target.run("echo out; echo err >&2")
    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")
    on_pty = target.run("test -t 0 && test -t 1 && echo tty; echo err >&2; read x; echo got $x",
                        pty=True, input=b"fed\n")
    # A terminal merges stderr into stdout, echoes input and ends lines with CR LF.
    assert on_pty.stderr == b"" and on_pty.exit_code == 0
    assert on_pty.stdout.count(b"\r\n") == 4
    assert set(on_pty.stdout.split(b"\r\n")) == {b"tty", b"err", b"fed", b"got fed", b""}
    # A pipeline's writer ends on SIGPIPE, as under a shell (Python 2 ignores SIGPIPE and
    # its subprocess passed that on: `yes` reported a broken pipe).
    piped = target.run(["bash", "-c", "yes | head -1; echo ${PIPESTATUS[@]}"])
    assert (piped.stdout, piped.stderr) == (b"y\n141 0\n", b"")
    # The command module is not in the payload: it went ahead of the first command, and
    # what the standard library probes for is not asked of the controller.
    assert router._modules.requested.get(target.context_id, []) == []


def test_pty_commands_time_out_and_report_their_status(target):
    assert target.run("exit 4", pty=True).exit_code == 4
    with pytest.raises(transport.Timeout) as info:
        target.run("sleep 30", pty=True, timeout=0.3)
    assert info.value.host == target.name


def test_a_pty_command_reading_to_the_end_of_its_input_ends(target):
    # After the input the terminal's end-of-file character is typed: twice when the
    # last line is unfinished (once hands "two" over, once ends the input). The timeout
    # only turns a hang into a failure.
    fed = target.run("cat; echo end", pty=True, input=b"one\ntwo", timeout=60)
    assert fed.exit_code == 0 and fed.stdout.endswith(b"end\r\n")
    assert fed.stdout.count(b"one") == 2 and fed.stdout.count(b"two") == 2  # echo and cat
    unfed = target.run("cat; echo end", pty=True, timeout=60)  # no input: at once
    assert unfed.exit_code == 0 and unfed.stdout == b"end\r\n"


def test_a_filter_fed_more_than_a_pipe_holds_does_not_deadlock(target):
    # od writes three times what it reads: it stops on a full output pipe unless the
    # target reads while it feeds the input.
    data = os.urandom(1024 * 1024)
    result = target.run("od -An -tx1 -v", input=data, timeout=120)
    assert result.exit_code == 0
    assert bytes.fromhex(result.stdout.decode().replace("\n", " ")) == data


def test_a_pty_command_that_stops_reading_its_input_does_not_deadlock(target):
    lines = b"y" * 99 + b"\n"
    result = target.run("head -n 100 > /dev/null; echo done", input=lines * 20000, pty=True,
                        timeout=120)
    assert result.exit_code == 0 and b"done\r\n" in result.stdout


def test_large_output_streams_in_chunks(target):
    chunks = []
    result = target.run("head -c 5000000 /dev/zero", on_output=lambda s, c: chunks.append((s, c)))
    assert len(result.stdout) == 5_000_000
    assert len(chunks) > 1 and all(stream == "stdout" for stream, _ in chunks)
    assert b"".join(c for _, c in chunks) == result.stdout


def test_the_controller_holds_a_commands_output_once(tmp_path):
    # In a process of its own, for a peak of its own: 200 MB of output, joined from its
    # chunks at the end, peaked at twice that.
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(
        "import resource, sys, transport\n"
        "with transport.Router() as router:\n"
        "    ctx = router.local(python=sys.executable)\n"
        "    ctx.run('true')\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    size = len(ctx.run('head -c 200000000 /dev/zero').stdout)\n"
        "    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(size, grown * 1024)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    size, grown = map(int, done.stdout.split())
    assert size == 200_000_000
    assert grown < size * 1.3


def test_threads_waiting_for_one_started_command_get_its_whole_result(target):
    # Both collected from the same events: one got part of the output as a success,
    # the other waited for ever.
    import threading

    command = target.start("for i in $(seq 200); do echo line$i; done; sleep 0.2")
    command.close_input()
    results = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, command.wait()),
                                daemon=True) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [0, 1, 2]
    assert results[0] is results[1] is results[2]
    assert results[0].stdout.count(b"\n") == 200 and results[0].exit_code == 0


def test_writing_to_a_command_whose_context_was_lost_says_why(router):
    import signal

    ctx = router.local()
    command = ctx.start(["cat"])
    command.write(b"taken\n")
    os.kill(ctx.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while ctx.alive:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(transport.Disconnected, match="killed by signal 9"):
        command.write(b"not taken\n")


def test_output_arrives_while_the_command_runs(target, tmp_path):
    # The command ends only once the caller has seen its first line.
    seen = tmp_path / "seen"
    chunks = []

    def on_output(stream, chunk):
        chunks.append(chunk)
        if b"first" in b"".join(chunks):
            seen.touch()

    result = target.run(f"echo first; while [ ! -e {seen} ]; do sleep 0.01; done; echo second",
                        on_output=on_output, timeout=60)
    assert result.stdout == b"first\nsecond\n"
    assert chunks[0].startswith(b"first\n")


def test_timeout_kills_the_whole_process_group(target, tmp_path):
    child = tmp_path / "child.pid"
    with pytest.raises(transport.Timeout):
        # The command waits for its child's pid file, so the kill meets both processes.
        target.run(f"sh -c 'echo $$ > {child}; exec sleep 600' & "
                   f"while [ ! -s {child} ]; do sleep 0.01; done; sleep 600", timeout=2)
    assert wait_gone(int(written_text(child))), "a child of the timed-out command survived"
    assert target.run("true").ok  # the context is still usable


ORPHANED_COMMAND = """
import sys, threading, transport
ctx = transport.Router().local(python=sys.argv[2])
threading.Thread(target=ctx.run, args=(sys.argv[1],), daemon=True).start()
sys.stdin.read()
"""


def test_commands_are_hung_up_on_when_the_target_loses_its_parent(tmp_path):
    import signal
    import subprocess
    import sys

    child = tmp_path / "child.pid"
    controller = subprocess.Popen(
        [sys.executable, "-c", ORPHANED_COMMAND, f"sh -c 'echo $$ > {child}; exec sleep 600'",
         PY], stdin=subprocess.PIPE)
    try:
        pid = int(written_text(child))
        controller.send_signal(signal.SIGKILL)
        assert wait_gone(pid), "the command outlived its target"
    finally:
        controller.kill()
        controller.wait()


@pytest.mark.parametrize("pty", [False, True])
def test_signal_commands_reaches_a_running_command_and_what_it_started(target, tmp_path, pty):
    import signal
    import threading

    child = tmp_path / "child.pid"
    results: list[transport.CommandResult] = []
    worker = threading.Thread(target=lambda: results.append(target.run(
        f"sh -c 'echo $$ > {child}; exec sleep 600'", pty=pty, timeout=120)), daemon=True)
    worker.start()
    pid = int(written_text(child))
    target.signal_commands()  # SIGINT, as Ctrl-C at a terminal
    assert wait_gone(pid), "the command's child did not get the signal"
    worker.join(60)
    assert results and results[0].exit_code == -signal.SIGINT
    target.signal_commands(signal.SIGTERM)  # none running: nothing happens
    assert target.run("echo still here").stdout == b"still here\n"
    with pytest.raises(ValueError, match="not a signal number"):
        target.signal_commands(0)


def test_signal_settings_a_call_left_do_not_break_later_commands(target, tmp_path):
    # What CLI modules often set at import: SIGPIPE to default (a command that stops
    # reading would end the target), SIGCHLD ignored (exit statuses lost), SIGINT ignored
    # (commands inherit it, and signal_commands cannot stop them).
    import signal
    import threading

    from tests import remote_functions as rf

    assert target.call(rf.set_signal, signal.SIGPIPE, "default")
    assert target.call(rf.set_signal, signal.SIGCHLD, "ignore")
    assert target.call(rf.set_signal, signal.SIGINT, "ignore")
    assert target.run("head -c1 >/dev/null", input=b"x" * (1 << 20)).exit_code == 0
    assert target.run("exit 3").exit_code == 3
    child = tmp_path / "child.pid"
    results: list[transport.CommandResult] = []
    worker = threading.Thread(target=lambda: results.append(target.run(
        f"sh -c 'echo $$ > {child}; exec sleep 600'", timeout=120)), daemon=True)
    worker.start()
    pid = int(written_text(child))
    target.signal_commands()
    assert wait_gone(pid), "the command ignored the interrupt"
    worker.join(60)
    assert results and results[0].exit_code == -signal.SIGINT


def test_a_signal_sent_while_a_command_starts_reaches_it_once_started(target):
    import signal

    from tests import remote_functions as rf

    assert target.call(rf.signal_the_next_command_as_it_starts, signal.SIGTERM)
    assert target.run("sleep 600", timeout=60).exit_code == -signal.SIGTERM
    assert target.run("echo later").stdout == b"later\n"  # a later command gets nothing


def test_a_target_whose_loop_fails_hangs_up_on_its_commands_and_leaves(target, tmp_path):
    from tests import remote_functions as rf

    child = tmp_path / "child.pid"
    target.call_async(rf.end_the_loop_while_a_command_runs, str(child))
    assert wait_gone(target.pid), "the target outlived its loop"
    assert wait_gone(int(written_text(child))), "the command outlived its target"


def test_closing_the_router_hangs_up_on_a_command_still_running(tmp_path):
    import threading

    child = tmp_path / "child.pid"
    router = transport.Router()
    ctx = router.local(python=PY)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            ctx.run(f"sh -c 'echo $$ > {child}; exec sleep 600'")
        except transport.TransportError as e:
            errors.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    pid = int(written_text(child))
    router.close(timeout=0.5)  # the command does not end when asked: it is hung up on
    assert wait_gone(pid), "the command outlived the router"
    assert wait_gone(ctx.pid), "the target outlived the router"
    worker.join(30)
    assert "hung up" in str(errors[0])


@pytest.mark.parametrize("end", ["shutdown", "close"])
def test_a_started_command_still_running_when_its_context_exits_is_left_running(tmp_path, end):
    # As a disowned one (Fabric's disown=True, which stock leaves running on the host):
    # the context exits at once, neither waiting for it nor hanging up on it.
    child = tmp_path / "child.pid"
    router = transport.Router()
    ctx = router.local(python=PY)
    running = ctx.start(f"sh -c 'echo $$ > {child}; exec sleep 600'")
    pid = int(written_text(child))
    try:
        if end == "shutdown":
            ctx.shutdown()
        router.close()
        assert wait_gone(ctx.pid), "the context waited for the command"
        os.kill(pid, 0)  # still there
        with pytest.raises(transport.Disconnected):
            running.wait()
    finally:
        os.kill(pid, signal.SIGKILL)


def test_a_hang_up_right_after_start_reaches_the_command(target):
    # Sent before the target had begun to start it, the signal was dropped there and
    # the command ran its whole course.
    running = target.start("sleep 20")
    running.hang_up()
    assert running.wait().exit_code == -signal.SIGHUP


RUN_INTERRUPTED_WHILE_QUEUED = """
import os, signal, sys, transport
sys.path.insert(0, os.getcwd())
from tests import remote_functions as rf
marker = sys.argv[1]
router = transport.Router()
ctx = router.local(python="/usr/bin/python3")
ctx.run("true")
slow = ctx.call_async(rf.sleep_then_return, 1, "slow")  # the run's call waits behind it

def interrupt(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGALRM, interrupt)
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    ctx.run("sleep 5; touch " + marker)
except KeyboardInterrupt:
    print("interrupted")
print(slow.result(timeout=30))
ctx.call(pow, 2, 2)  # runs after the command's call
print("ran" if os.path.exists(marker) else "hung up")
router.close()
"""


def test_a_run_interrupted_while_its_call_waits_is_hung_up_on_once_it_starts(tmp_path):
    # The hang-up reached the target before the command's call began, found nothing and
    # was dropped: the command then ran its whole course, holding the context.
    import subprocess
    import sys

    marker = tmp_path / "ran"
    result = subprocess.run([sys.executable, "-c", RUN_INTERRUPTED_WHILE_QUEUED, str(marker)],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout == "interrupted\nslow\nhung up\n", result.stderr


def test_check_raises_command_failed_with_the_result(target):
    with pytest.raises(transport.CommandFailed) as info:
        target.run("echo nope >&2; exit 4", check=True)
    assert info.value.result.exit_code == 4
    assert "nope" in str(info.value) and target.name in str(info.value)
    assert info.value.host == target.name


def test_commands_run_as_the_context_user(router, sshd):
    import pwd

    ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", python=PY,
                     ssh_options=sshd.ssh_options())
    assert ctx.run("id -un").stdout == b"tp-plain\n"
    root = router.sudo(via=router.ssh("127.0.0.1", port=sshd.port, user="tp-nopw", python=PY,
                                      ssh_options=sshd.ssh_options()), python=PY)
    assert root.run(["id", "-u"]).stdout == b"0\n"
    assert pwd.getpwnam("tp-plain")


def test_a_command_on_a_dead_context_is_disconnected(router):
    ctx = router.local(python=PY)
    ctx.shutdown()
    with pytest.raises(transport.Disconnected):
        ctx.run("true")


def test_disconnect_during_a_command(router):
    ctx = router.local(python=PY)
    import signal
    import threading

    threading.Timer(0.5, os.kill, (ctx.pid, signal.SIGKILL)).start()
    with pytest.raises(transport.Disconnected):
        ctx.run("sleep 30")


def test_log_records_are_forwarded_with_the_host_name(router, caplog):
    import logging

    from tests import remote_functions as rf

    ctx = router.local()
    caplog.set_level(logging.INFO)
    ctx.forward_logging(logging.INFO)
    ctx.call(rf.log_message, logging.WARNING, "disk nearly full")
    ctx.call(rf.log_message, logging.DEBUG, "below the level")
    ctx.call(pow, 1, 1)  # the records travel ahead of this reply
    records = [r for r in caplog.records if r.name == "transport.remote.tp.app"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, f"{ctx.name}: disk nearly full")]


def test_a_timed_command_waiting_behind_a_long_call_is_not_given_up_early(target, monkeypatch):
    import transport.commands
    from tests import remote_functions

    # Counted from the call, 2.5 s (+1.5 s grace) would end before the 5 s call ahead does.
    monkeypatch.setattr(transport.commands, "TIMEOUT_GRACE", 1.5)
    before = target.call_async(remote_functions.sleep_then_return, 5.0, "done")
    result = target.run("echo ran", timeout=2.5)  # counted from the command's start
    assert result.text("stdout") == "ran\n" and before.result() == "done"


def test_an_output_callback_that_raises_is_the_callers_error(target):
    def fussy(stream, chunk):
        chunk.decode("ascii")

    with pytest.raises(UnicodeDecodeError):
        target.run("printf '\\377'", on_output=fussy)
    assert target.run("echo fine").text("stdout") == "fine\n"


# -- Context.start: a live stdin ---------------------------------------------------------


def _answer_prompts(command):
    """Answer each 'name?' prompt of a started command with a line made from what it
    printed last: the answers depend on the output, so they go while it runs."""
    import threading

    seen = []
    prompted = threading.Semaphore(0)

    def on_output(stream, chunk):
        seen.append(chunk)
        if chunk.endswith(b"?"):
            prompted.release()

    command._on_output = on_output
    waiter = threading.Thread(target=lambda: seen.append(command.wait()), daemon=True)
    waiter.start()
    for round_ in (1, 2):
        assert prompted.acquire(timeout=60), seen
        prompt = b"".join(seen).rsplit(b"\n", 1)[-1].decode()
        command.write(f"answer{round_} to {prompt}\n")
    waiter.join(60)
    return seen[-1]


@pytest.mark.parametrize("label", sorted(INTERPRETERS))
def test_a_started_command_takes_input_while_it_runs_on_every_interpreter(router, label):
    target = router.local(python=INTERPRETERS[label])
    command = target.start("for n in 1 2; do printf 'name%s?' $n; read a; echo \"got $a\"; done")
    result = _answer_prompts(command)
    assert result.exit_code == 0
    assert result.stdout == b"name1?got answer1 to name1?\nname2?got answer2 to name2?\n"
    # On a terminal, the typed input is echoed, and close_input types end-of-file.
    on_pty = target.start("cat; echo end", pty=True)
    on_pty.write(b"typed")
    on_pty.close_input()
    assert on_pty.wait().stdout == b"typedtypedend\r\n"  # the echo, then cat


def test_live_input_beyond_the_window_flows_and_the_output_is_kept(target):
    from transport.commands import INPUT_WINDOW

    data = os.urandom(8 * INPUT_WINDOW + 123)
    command = target.start("od -An -tx1 -v", timeout=120)  # three times the input as output
    command.write(data)  # all of it before anyone reads the output
    command.close_input()
    result = command.wait()
    assert result.exit_code == 0
    assert bytes.fromhex(result.stdout.decode().replace("\n", " ")) == data


def test_a_command_may_end_before_its_input_does(target, tmp_path):
    # It never reads: its end ends the call, with the input still open.
    done = target.start("echo done", timeout=60)
    assert done.wait().stdout == b"done\n"
    with pytest.raises(BrokenPipeError, match="has ended"):
        done.write(b"late")
    done.close_input()  # nothing to do now
    # It closes its stdin and waits: more input than the window is dropped, not waited on.
    flag = tmp_path / "written"
    closer = target.start(f"exec 0<&-; while [ ! -e {flag} ]; do sleep 0.01; done; echo closed",
                          timeout=60)
    closer.write(b"x" * (4 * 1024 * 1024))
    closer.close_input()
    flag.touch()
    assert closer.wait().stdout == b"closed\n"
    # Without close_input, a command reading to the end of its input waits for it.
    waiting = target.start("cat", timeout=0.5)
    waiting.write(b"partial")
    with pytest.raises(transport.Timeout):
        waiting.wait()
    with pytest.raises(transport.Timeout):  # a second wait says the same
        waiting.wait()
    with pytest.raises(ValueError, match="closed"):
        closer.write(b"after close_input")


def test_live_input_through_an_intermediary(router):
    inter = router.local(python=PY, name="inter")
    child = router.local(via=inter, python=PY)
    command = child.start("tr a-z A-Z")
    for piece in (b"one ", b"two"):
        command.write(piece)
    command.close_input()
    assert command.wait().stdout == b"ONE TWO"
    assert child.run("cat", input=b"whole").stdout == b"whole"  # run() is unchanged


def test_a_pty_has_a_size(target):
    assert target.run("stty size", pty=True).stdout == b"24 80\r\n"  # as a terminal's default
    assert target.run("stty size", pty=True, pty_size=(132, 50)).stdout == b"50 132\r\n"
    with pytest.raises(ValueError, match="columns, rows"):
        target.run("true", pty=True, pty_size=(0, 24))


def test_a_started_command_runs_alongside_later_calls_and_commands(target, tmp_path):
    flag = tmp_path / "released"
    waiting = target.start(f"until [ -e {flag} ]; do sleep 0.01; done; echo released",
                           timeout=30)
    # Behind it, these would wait for its end, which waits for them.
    assert target.call(os.path.exists, str(flag)) is False
    assert target.run(["touch", str(flag)]).exit_code == 0
    assert waiting.wait().stdout == b"released\n"
    # One that cannot start says so at wait(); its input is refused meanwhile, not waited on.
    failed = target.start("true", cwd=str(tmp_path / "missing"))
    with pytest.raises(transport.RemoteError, match="missing"):
        failed.wait()
    with pytest.raises(BrokenPipeError):
        failed.write(b"never taken")


def test_live_input_goes_on_while_the_command_runs_with_its_output_closed(target, tmp_path):
    written = tmp_path / "written"
    command = target.start(f"exec >/dev/null 2>&1; sleep 0.3; cat > {written}", timeout=60)
    command.write(b"x" * 6000)
    command.close_input()
    assert command.wait().exit_code == 0
    assert written.read_bytes() == b"x" * 6000


def test_a_command_that_ends_before_its_call_returns_leaves_nothing_behind(target, caplog):
    # Run alongside, `true` may end (and say so) before the call's own reply comes: the
    # caller waits for both, so nothing arrives at a handle it has let go of.
    import logging

    caplog.set_level(logging.WARNING)
    for _ in range(300):
        assert target.start("true").wait().exit_code == 0
    assert [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()] == []


def test_a_started_command_on_a_pty_follows_a_new_size(target):
    import threading

    seen = []
    ready = threading.Event()

    def on_output(stream, chunk):
        seen.append(chunk)
        if b"ready" in b"".join(seen):
            ready.set()

    command = target.start("echo ready; read x; stty size", pty=True, pty_size=(90, 30),
                           on_output=on_output, timeout=60)
    waiter = threading.Thread(target=lambda: seen.append(command.wait()), daemon=True)
    waiter.start()
    assert ready.wait(60)
    command.resize((120, 50))
    command.write("\n")  # after the new size: the size reaches the terminal first
    waiter.join(60)
    assert seen[-1].stdout.endswith(b"50 120\r\n")
    with pytest.raises(ValueError, match="on a pty"):
        target.start("true").resize((80, 24))


@pytest.mark.parametrize("label", ["2.7", "3.6", "3.13"])
def test_non_ascii_arguments_env_and_cwd_under_the_c_locale(router, label, tmp_path, monkeypatch):
    # ssh sessions with no locale and cron run under C: there Python 2.7 and 3.6 take
    # text for the system as ASCII; a command's arguments, environment and directory
    # reach it as UTF-8 bytes, as on 3.7+ and for every other program.
    monkeypatch.setenv("LC_ALL", "C")
    monkeypatch.setenv("LANG", "C")
    place = tmp_path / "d\u00e9p\u00f4t"
    place.mkdir()
    (place / "caf\u00e9").write_bytes(b"")
    ctx = router.local(python=INTERPRETERS[label])
    name = "\u00e9t\u00e9"
    assert ctx.run(["ls", str(place)]).stdout == "caf\u00e9\n".encode()
    assert ctx.run(f"ls {place}/caf\u00e9").stdout == f"{place}/caf\u00e9\n".encode()
    result = ctx.run('printf "%s|" "$TP_NAME" "$PWD"', env={"TP_NAME": name}, cwd=str(place))
    assert result.stdout.decode() == f"{name}|{place}|"
    # A baseline (what later calls and commands start from) takes such names too.
    assert ctx.set_baseline(str(place), {"TP_NAME": name}) == str(place)
    assert ctx.run('printf "%s|" "$TP_NAME" "$PWD"').stdout.decode() == f"{name}|{place}|"


def test_input_larger_than_a_message_streams_to_the_command():
    # run()'s input travels in the call up to a few MiB; more streams in windows, so the
    # message size limit (1 MiB here) does not apply to it, nor does it end the target.
    import hashlib

    with transport.Router(max_message_size=1024 * 1024) as small:
        target = small.local(python=PY)
        data = os.urandom(3 * 1024 * 1024)
        result = target.run("sha256sum", input=data)
        assert result.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
        assert target.run("head -c 10 >/dev/null", input=data).exit_code == 0  # stops reading
        chunks: list[bytes] = []
        result = target.run("cat", input=data, pty=False,
                            on_output=lambda stream, chunk: chunks.append(chunk))
        assert b"".join(chunks) == data and result.stdout == data
        assert target.call(pow, 2, 3) == 8


def test_a_log_record_longer_than_a_message_is_cut_not_the_connection(caplog):
    import logging

    from tests import remote_functions as rf

    with transport.Router(max_message_size=1024 * 1024) as router:
        ctx = router.local(python=PY)
        caplog.set_level(logging.INFO)
        ctx.forward_logging(logging.INFO)
        ctx.call(rf.log_long_message, logging.WARNING, 2 * 1024 * 1024)
        assert ctx.call(pow, 1, 1) == 1
    records = [r.getMessage() for r in caplog.records if r.name == "transport.remote.tp.app"]
    assert len(records) == 1 and records[0].endswith("... [1835008 characters more]")


@pytest.mark.parametrize("live", [False, True])
def test_a_command_nobody_waits_for_any_more_is_hung_up_on(target, tmp_path, live, caplog):
    # An on_output that raises (or an interrupt) ends wait() on our side; the command
    # is hung up on, as a closed terminal would, instead of holding the context (a
    # `tail -f` would hold it for ever). Another command running alongside goes on.
    other = target.start("sleep 1; echo alongside")

    def fail(stream: str, chunk: bytes) -> None:
        raise RuntimeError("the caller's own error")

    child = tmp_path / "child.pid"
    command = f"sh -c 'echo $$ > {child}; echo first; exec sleep 600'"
    with pytest.raises(RuntimeError, match="the caller's own error"):
        if live:
            target.start(command, on_output=fail).wait()
        else:
            target.run(command, on_output=fail)
    assert wait_gone(int(written_text(child))), "the command still runs"
    assert target.call(pow, 2, 3) == 8
    assert other.wait().stdout == b"alongside\n"
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]  # its end was taken


def test_streamed_input_stops_when_the_caller_stops_waiting(target, tmp_path):
    # A command that ignores the hang-up and stops reading: run() still returns (with the
    # caller's error) instead of waiting for ever to write the rest of its input.
    import signal

    def fail(stream: str, chunk: bytes) -> None:
        raise RuntimeError("the caller's own error")

    child = tmp_path / "child.pid"
    with pytest.raises(RuntimeError, match="the caller's own error"):
        target.run(f"trap '' HUP; echo $$ > {child}; echo hi; exec sleep 600",
                   input=b"x" * (6 << 20), on_output=fail)
    target.signal_commands(signal.SIGKILL)
    assert wait_gone(int(written_text(child)))
    assert target.call(pow, 2, 3) == 8


def test_a_command_over_the_message_size_limit_is_refused_here():
    with transport.Router(max_message_size=1024 * 1024) as small:
        target = small.local(python=PY)
        with pytest.raises(ValueError, match="over the message size limit"):
            target.run("true", env={"HUGE": "x" * (2 * 1024 * 1024)})
        assert target.run("echo still here").stdout == b"still here\n"


def _acknowledgements_held(monkeypatch) -> dict:
    """Make the controller record what output comes without acknowledging it: the test
    acknowledges by hand (the target is untouched)."""
    from transport import commands

    seen = {"bytes": 0, "handle": None}

    def record(command, size, event):
        seen["bytes"] += size
        if event[0] == commands.ACKS:
            seen["handle"] = event[1]

    monkeypatch.setattr(commands.RunningCommand, "_acknowledge", record)
    return seen


def _when(condition, what):
    for _ in range(600):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"30 s without {what}")


@pytest.mark.parametrize("label", sorted(INTERPRETERS))
@pytest.mark.parametrize("pty", [False, True], ids=["pipes", "pty"])
def test_output_waits_for_the_callers_acknowledgements(router, label, pty, monkeypatch, tmp_path):
    """A command whose output is not acknowledged is not read beyond the window (it
    waits, as on a full pipe, instead of the target holding its output), and goes on
    as acknowledgements come, losing nothing."""
    from transport.core.commands import CHUNK, OUTPUT_WINDOW
    from transport.core.framing import Message
    from transport.core.handles import CONTROLLER_ID

    seen = _acknowledgements_held(monkeypatch)
    target = router.local(python=INTERPRETERS[label])
    done = tmp_path / "done"
    size = 3 * OUTPUT_WINDOW
    command = target.start(f"head -c {size} /dev/zero | tr '\\0' x; touch {done}", pty=pty)
    _when(lambda: seen["bytes"] >= OUTPUT_WINDOW, "a window of output")
    time.sleep(0.5)  # time to read far more, were the window not kept
    assert OUTPUT_WINDOW <= seen["bytes"] <= OUTPUT_WINDOW + CHUNK + 64
    assert seen["handle"] is not None and not done.exists()
    core, acknowledged = router._core, 0

    def acknowledge():
        nonlocal acknowledged
        if seen["bytes"] > acknowledged:
            acknowledged = seen["bytes"]
            core.send(Message(target.context_id, CONTROLLER_ID, seen["handle"],
                              codec.encode(acknowledged)))
        return done.exists()

    _when(acknowledge, "the command's end")
    result = command.wait()
    assert result.exit_code == 0 and result.stdout.replace(b"\r\n", b"\n") == b"x" * size


def test_a_program_named_otherwise_and_a_command_hung_up_on(target, tmp_path):
    """executable= runs a program under another argv[0] (a shell named as sshd names
    it); hang_up() ends a started command as a closed terminal would."""
    assert target.run(["sh", "-c", "echo $0"], executable="/bin/sh").stdout == b"sh\n"
    with pytest.raises(ValueError, match="executable= goes with a command given as a list"):
        target.run("echo $0", executable="/bin/sh")
    started = tmp_path / "started"
    command = target.start(f"touch {started}; exec sleep 60")
    _when(started.exists, "the command's start")
    command.hang_up()
    assert command.wait().exit_code == -1  # SIGHUP
