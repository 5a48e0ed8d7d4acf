"""A compromised target, sending forged messages from inside a call, cannot cut off or fail
its siblings, hang its caller, or make the controller keep what it sends."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import sys
import time

import pytest

import transport
from tests import remote_functions as hostile
from transport.core import codec
from transport.core.handles import CALL_FUNCTION


def _siblings(router):
    inter = router.local(python=sys.executable, name="intermediary")
    evil = router.local(via=inter, name="evil")
    victim = router.local(via=inter, name="victim")
    return inter, evil, victim


def test_a_context_cannot_report_its_intermediary_or_siblings_lost(router):
    inter, evil, victim = _siblings(router)
    assert evil.call(hostile.forge_del_route, [inter.context_id, victim.context_id], "forged")
    assert evil.call(hostile.forge_del_route, [victim.context_id], 5)  # not even text
    assert inter.alive and victim.alive
    assert victim.call(os.getpid) != inter.call(os.getpid)


def test_an_intermediarys_word_on_its_childs_loss_is_made_printable_and_short(router):
    # A child is the intermediary's to report lost, but not with terminal escapes or a
    # 100 MB reason in the caller's exception.
    inter = router.local(python=sys.executable, name="intermediary")
    child = router.local(via=inter, name="child")
    assert inter.call(hostile.forge_del_route, [child.context_id], "gone\x1b]0;pwned\x07" + "x" * 1000)
    with pytest.raises(transport.Disconnected) as info:
        child.call(os.getpid)
    assert str(info.value) == "child: disconnected: gone?]0;pwned?" + "x" * 486


def test_forged_dead_notices_do_not_fail_a_siblings_calls(router):
    inter, evil, victim = _siblings(router)
    direct = router.local(python=sys.executable, name="direct")
    # The calls last 3 s (the command waits behind the direct one), so that even on a
    # slow machine the notices land while all of them are still waiting.
    pending = [victim.call_async(hostile.sleep_then_return, 3.0, "victim's"),
               direct.call_async(hostile.sleep_then_return, 3.0, "direct's")]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # A command's output arrives on a handle that serves the victim only.
        command = pool.submit(direct.run, "sleep 1; echo done")
        time.sleep(0.3)
        try:
            evil.call(hostile.forge_dead_notices, 1000, 1500)
        except transport.Disconnected:
            pass  # a context may fail its own calls: the notices hit this one's handle too
        assert [f.result(timeout=10) for f in pending] == ["victim's", "direct's"]
        assert command.result(timeout=10).text("stdout") == "done\n"


def test_a_malformed_reply_fails_the_call_instead_of_hanging(router):
    ctx = router.local(python=sys.executable)
    assert ctx.call(hostile.answer_next_call_with_a_dict)
    with pytest.raises(transport.ProtocolError, match="malformed reply"):
        ctx.call(os.getpid)
    assert ctx.call(os.getpid) > 0  # the next call is answered as usual


def test_module_names_a_target_makes_up_are_not_kept(router):
    ctx = router.local(python=sys.executable)
    assert ctx.call(hostile.ask_for_a_huge_module_name, 1_000_000)
    sent = router._modules._sent.get(ctx.context_id, set())
    assert not any(len(name) > 1000 for name in sent)
    assert not any(len(name) > 1000 for name in router._modules.requested.get(ctx.context_id, []))


def test_a_flood_of_module_requests_is_cut_short_and_not_kept(router, caplog):
    # Queued without end, 1M requests took 660 MiB here and delayed every other
    # context's imports by minutes.
    import transport.modules

    ctx = router.local(python=sys.executable, name="flooder")
    with caplog.at_level("WARNING", logger="transport"):
        assert ctx.call(hostile.ask_for_made_up_modules, 20_000)
    assert (f"context {ctx.context_id} asks for more than {transport.modules.MAX_WAITING} "
            "modules at once: requests dropped") in caplog.text
    modules = router._modules
    assert not [name for name in modules._sent.get(ctx.context_id, ()) if "made_up" in name]
    assert len(modules.requested[ctx.context_id]) <= transport.modules.MAX_REQUESTED_KEPT
    assert ctx.call(os.getpid) == ctx.pid


def test_what_a_target_writes_in_errors_cannot_drive_the_terminal(router):
    ctx = router.local(python=sys.executable, name="evil")
    assert ctx.call(hostile.answer_the_next_call_as_gone, "gone\x1b]0;owned\x07\x1b[2J" + "x" * 10_000)
    with pytest.raises(transport.Disconnected) as info:
        ctx.call(os.getpid)
    assert str(info.value) == "evil: disconnected: gone?]0;owned??[2J" + "x" * 482  # 500 in all
    with pytest.raises(transport.RemoteError) as raised:
        ctx.call(hostile.fail, "one\x1b[2J\n\ttwo\x9b")
    assert "one?[2J\n\ttwo?" in str(raised.value)
    assert "\x1b" not in str(raised.value) and "\x9b" not in str(raised.value)
    assert raised.value.remote_message == "one\x1b[2J\n\ttwo\x9b"  # kept as it came


def test_a_command_timeout_holds_even_if_the_target_never_answers(router, monkeypatch):
    import transport.commands

    monkeypatch.setattr(transport.commands, "TIMEOUT_GRACE", 1.0)
    ctx = router.local(python=sys.executable)
    ctx.run("true")  # the command module is there
    assert ctx.call(hostile.make_commands_hang)
    with pytest.raises(transport.Timeout, match="no answer"):  # the target never answers
        ctx.run("true", timeout=0.5)


def test_a_malformed_hello_is_a_connect_error_and_leaves_no_context(router):
    inter = router.local(python=sys.executable, name="intermediary")
    inter.preload(["transport.core.spawn"])
    assert inter.call(hostile.make_connect_answer_with_a_bad_hello)
    with pytest.raises(transport.ConnectError, match="hello is malformed"):
        router.local(via=inter, name="child")
    assert [c.name for c in router.contexts()] == ["intermediary"]
    assert inter.call(os.getpid) > 0


def test_refused_messages_and_forwarded_log_names_cannot_flood_the_controller(router, caplog):
    import logging

    from transport.controller import DROP_WARNINGS

    ctx = router.local(python=sys.executable)
    with caplog.at_level(logging.DEBUG, logger="transport"):
        assert ctx.call(hostile.send_refused_messages, 200)
    refused = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(refused) == 200
    assert sum(r.levelno == logging.WARNING for r in refused) == DROP_WARNINGS
    ctx.forward_logging()
    before = set(logging.root.manager.loggerDict)
    assert ctx.call(hostile.log_under_many_names, 1500)
    loggers = logging.root.manager.loggerDict
    made = {name for name in set(loggers) - before
            if name.startswith("transport.remote.") and isinstance(loggers[name], logging.Logger)}
    assert len(made) == 1001 and "transport.remote.other" in made  # 1000 names, then "other"


def test_messages_a_handler_fails_on_cannot_flood_the_controllers_log(router, caplog):
    # 1000 DEL_ROUTEs that do not decode were 1000 errors with a traceback each.
    import logging

    from transport.controller import DROP_WARNINGS
    from transport.core.handles import DEL_ROUTE

    ctx = router.local(python=sys.executable)
    with caplog.at_level(logging.DEBUG, logger="transport"):
        assert ctx.call(hostile.send_refused_messages, 200, DEL_ROUTE, b"\xff")
    failed = [r for r in caplog.records if "error in the handler of" in r.getMessage()]
    assert len(failed) == 200
    assert sum(r.levelno == logging.ERROR for r in failed) == DROP_WARNINGS
    assert all(r.exc_info for r in failed if r.levelno == logging.ERROR)
    assert ctx.call(os.getpid) > 0


def test_a_targets_stderr_and_log_records_reach_the_log_without_escape_sequences(router,
                                                                               caplog):
    import logging

    ctx = router.local(python=sys.executable, name="scribbler")
    ctx.forward_logging()
    # (a \r that would write over the line shows; one that ends it, before \n, is its end)
    expected = "scribbler: innocent ?]0;retitled??[2J?[31mred?over"
    with caplog.at_level(logging.INFO):
        assert ctx.call(hostile.write_escapes_and_fake_lines)
        deadline = time.monotonic() + 10  # its stderr and the reply come apart
        while (expected not in [r.getMessage() for r in caplog.records]
               and time.monotonic() < deadline):
            time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.name == "transport.stderr"]
    assert expected in lines, lines
    (record,) = [r for r in caplog.records if r.name == "transport.remote.app"]
    assert record.getMessage() == "scribbler: first\n?[2Jtransport: web2: connected"


@pytest.mark.parametrize("status", [5, {"id": 1}, {"id": "1", "state": "done", "result": 1,
                                                  "pid": 2, "function": "f", "started": 0.0,
                                                  "error": 5},
                                    {"id": "1", "state": "done", "result": 1, "pid": 2,
                                     "function": "f", "started": 0.0}])
def test_a_malformed_job_status_is_a_protocol_error(router, status):
    ctx = router.local(python=sys.executable, name="liar")
    assert ctx.call(hostile.report_job_statuses_as, status)
    with pytest.raises(transport.ProtocolError, match="liar: malformed"):
        ctx.job("1-000000000000")


def test_forwarded_log_records_are_taken_as_the_targets_logs_module_sends_them(router,
                                                                               caplog):
    ctx = router.local(python=sys.executable, name="liar")
    ctx.forward_logging()
    with caplog.at_level(logging.DEBUG):
        assert ctx.call(hostile.send_raw_log_record, 10 ** 30, "app\x1b[2J\nfake.logger",
                        "x" * 3_000_000)
    (record,) = [r for r in caplog.records if r.name.startswith("transport.remote.")]
    assert record.name == "transport.remote.app?[2J?fake.logger"
    assert record.levelno == logging.CRITICAL
    assert len(record.getMessage()) < 300 * 1024


def test_a_target_that_asks_without_reading_cannot_make_the_controller_queue_without_end(
        router, monkeypatch):
    import transport.modules

    monkeypatch.setattr(transport.modules, "MAX_WAITING", 100_000)  # the answers are held
    limit = transport.modules.BACKLOG_LIMIT
    ctx = router.local(python=sys.executable)
    # Each answer carries paramiko.transport's source (~35 kB compressed): 4000 would be 140 MB.
    ctx.call_async(hostile.stop_reading_and_ask_for, "paramiko.transport", 4000)
    stream = router._core.route_for(ctx.context_id)
    deadline = time.monotonic() + 60
    queued = []  # sampled for 2 s from when the backlog first passes the limit
    while time.monotonic() < deadline and sum(q > limit for q in queued) < 40:
        queued.append(stream.queued())
        time.sleep(0.05)
    closure = router._modules.finder.closure("paramiko.transport", set())
    first_reply = len(transport.modules.pack_entries(closure))
    assert max(queued) > limit  # it did stop reading
    assert max(queued) <= limit + first_reply + 1024 * 1024  # the backlog stays bounded


def test_held_module_requests_do_not_keep_what_they_carry(router, monkeypatch):
    # Requests queued or held while the asker reads no answers kept their data: 30 of
    # 64 MiB took the controller to 2 GB.
    import transport.modules

    def rss() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    monkeypatch.setattr(transport.modules, "MAX_WAITING", 100_000)  # all of them are held
    monkeypatch.setattr(transport.modules, "MAX_HELD", 100_000)
    ctx = router.local(python=sys.executable)
    before = rss()
    done = ctx.call_async(hostile.stop_reading_and_send_large_requests, "paramiko.transport",
                          1500, 16 * 1024 * 1024, 16)
    assert done.result(timeout=60)  # its reply comes after the large requests
    # They wait behind the others (queued, or held while the answers go unread).
    assert rss() - before < 128 * 1024 * 1024  # with the large requests' data: over 256 MiB


def test_an_intermediary_does_not_keep_names_its_children_make_up(router):
    inter, evil, _victim = _siblings(router)
    assert evil.call(hostile.ask_parent_for_a_huge_module_name, 1_000_000)
    assert inter.call(hostile.longest_cached_module_name) < 1000


@pytest.mark.parametrize("claimed", [0o6777, "0o6777"])
def test_a_get_never_takes_special_bits_or_odd_modes_from_the_target(router, tmp_path, claimed):
    ctx = router.local(python=sys.executable, name="liar")
    source = tmp_path / "source"
    source.write_bytes(b"the target chose this")
    assert ctx.call(hostile.report_file_modes_as, claimed)
    local = tmp_path / "got"
    if isinstance(claimed, int):
        ctx.get(str(source), str(local))
        assert oct(os.stat(local).st_mode & 0o7777) == oct(0o777)  # permission bits only
    else:
        with pytest.raises(transport.TransportError, match="liar: .*not a number"):
            ctx.get(str(source), str(local))
        assert not local.exists()
    assert ctx.call(os.getpid) > 0


@pytest.mark.parametrize("reply", [
    (), ("fail",), ("zzz",), ("fail", "r", [1]), ("fail", 5, {}),
    ("fail", "boom\x1b]0;pwned\x07", {"stderr": "e\x1b[31m" + "y" * 100_000, "auth": "yes"}),
    ("ok", {"pid": 1, "python": "p", "version": "3.11.7", "byte_code_tag": 5}),
    ("ok", {"pid": 1, "python": "p\x1b[2J", "version": "3.11.7", "byte_code_tag": None}),
])
def test_a_malformed_connect_answer_is_a_connect_error(router, reply):
    inter = router.local(python=sys.executable, name="liar")
    inter.call(hostile.answer_connects_with, reply)
    with pytest.raises(transport.ConnectError) as info:
        router.local(python=sys.executable, via=inter)
    assert type(info.value) is transport.ConnectError  # not AuthError on the liar's word
    assert "\x1b" not in str(info.value) and len(str(info.value)) < 6000
    assert isinstance(info.value.reason, str)
    assert inter.call(pow, 2, 5) == 32


def test_a_target_reads_neither_the_controllers_script_nor_packages_it_was_not_sent(
        router, tmp_path):
    # Any target could read the script the controller runs (passwords in it, say) and the
    # data files of any package on its sys.path, by asking.
    import importlib

    from tests.support.packages import importable_tree
    from transport.core.handles import GET_MODULE, GET_RESOURCE

    files = {"vaultpkg/__init__.py": "def opened():\n    return True\n",
             "vaultpkg/vault.yml": "password: s3cret\n"}
    with importable_tree(tmp_path, files, "vaultpkg"):
        vaultpkg = importlib.import_module("vaultpkg")
        snooper = router.local(python=sys.executable, name="snooper")
        assert snooper.call(hostile.ask_the_controller, GET_MODULE,
                            "__transport_main__") == ["missing"]
        assert snooper.call(hostile.ask_the_controller, GET_RESOURCE,
                            ("vaultpkg", "vault.yml")) == "refused"
        # A context that was sent the package reads its data, as any forwarded package's.
        user = router.local(python=sys.executable, name="user")
        assert user.call(vaultpkg.opened)
        assert user.call(hostile.ask_the_controller, GET_RESOURCE,
                         ("vaultpkg", "vault.yml")) == "ok"


SNOOPED_SCRIPT = """
import sys
sys.path[1:1] = [{root!r}]
SECRET = "in-the-script"
import transport
from tests import remote_functions as hostile
from transport.core.handles import GET_MODULE


def noop():
    return True


if __name__ == "__main__":
    with transport.Router() as router:
        snooper = router.local(python=sys.executable)
        for name in ("__transport_main__.x", "{name}", "__transport_main__"):
            print(name, snooper.call(hostile.ask_the_controller, GET_MODULE, name))
        user = router.local(python=sys.executable)  # a function of the script was called
        user.call(noop)
        print("user", user.call(hostile.ask_the_controller, GET_MODULE, "{name}"))
"""


@pytest.mark.parametrize("run_as", ["script", "module"])
def test_no_name_gives_a_target_the_controllers_script(tmp_path, run_as):
    # A name below the script's alias (__transport_main__.x) or the module name its file
    # also has (deploy, beside it on sys.path; app.deploy under -m) gave it to any target.
    from tests.conftest import REPO_ROOT
    from tests.support.processes import run_python_program

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    name = "deploy" if run_as == "script" else "app.deploy"
    script = tmp_path / "app" / "deploy.py"
    script.write_text(SNOOPED_SCRIPT.format(root=str(REPO_ROOT), name=name))
    argv = [str(script)] if run_as == "script" else ["-m", "app.deploy"]
    out = run_python_program([sys.executable, *argv], 120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "__transport_main__.x ['missing']", f"{name} ['missing']", "__transport_main__ ['missing']",
        "user ['module']"]


def test_a_flood_at_a_puts_acknowledgement_handle_is_refused(router, tmp_path):
    # Queued by the router's thread, 30 messages of 64 MiB took the controller to 2 GB.
    ctx = router.local(python=sys.executable, name="liar")
    source = tmp_path / "source"
    source.write_bytes(os.urandom(12 * 1024 * 1024))  # acknowledgements are waited for
    assert ctx.call(hostile.flood_put_acknowledgements, 4, 1024 * 1024)
    with pytest.raises(transport.ProtocolError, match="liar: sent more than a transfer waits "
                                                      "for"):
        ctx.put(str(source), str(tmp_path / "copy"))
    assert ctx.call(os.getpid) > 0


@pytest.mark.parametrize("reply", [("err", 1, [2], {3: 4}), ("err", "x" * 600, "m", "t"),
                                   ("err", "T", "m"), ("nope", 1)])
def test_a_malformed_error_reply_is_a_protocol_error(router, reply):
    ctx = router.local(python=sys.executable, name="liar")
    assert ctx.call(hostile.answer_next_call_with, reply)
    with pytest.raises(transport.ProtocolError, match="liar: malformed") as info:
        ctx.call(pow, 2, 5)
    assert len(str(info.value)) < 400
    assert ctx.call(pow, 2, 5) == 32


@pytest.mark.parametrize("status", ["oops\x1b[2J", [1], None, 2.5])
def test_a_command_status_that_is_not_a_number_is_a_protocol_error(router, status):
    ctx = router.local(python=sys.executable, name="liar")
    ctx.run("true")  # the commands module is there
    assert ctx.call(hostile.report_exit_statuses_as, status)
    with pytest.raises(transport.ProtocolError, match="liar: malformed exit status") as info:
        ctx.run("true")
    assert "\x1b" not in str(info.value)
    assert ctx.call(pow, 2, 5) == 32


@pytest.mark.parametrize("claimed", [2 ** 62, -5, "many"])
def test_a_put_believes_no_acknowledgement_of_more_than_was_sent(router, tmp_path, claimed):
    # Believed, 2**62 would open the window: the controller would queue the whole file.
    ctx = router.local(python=sys.executable, name="liar")
    source = tmp_path / "source"
    source.write_bytes(os.urandom(12 * 1024 * 1024))  # more than the 8 MiB window
    assert ctx.call(hostile.acknowledge_the_next_put_at_once, claimed)
    with pytest.raises(transport.ProtocolError, match=r"liar: acknowledged .* bytes of the \d+ sent"):
        ctx.put(str(source), str(tmp_path / "copy"))
    assert not (tmp_path / "copy").exists()
    assert ctx.call(os.getpid) > 0


@pytest.mark.parametrize("handle", [2 ** 40, CALL_FUNCTION, None])
def test_a_put_sends_no_data_to_a_handle_the_target_may_not_name(router, tmp_path, handle):
    ctx = router.local(python=sys.executable, name="liar")
    source = tmp_path / "source"
    source.write_bytes(b"some data")
    assert ctx.call(hostile.name_put_data_handle, handle)
    with pytest.raises(transport.ProtocolError, match=f"liar: .*copy: the target asked for the "
                                                      f"data at {handle!r}, not a handle"):
        ctx.put(str(source), str(tmp_path / "copy"))
    assert ctx.call(os.getpid) > 0


@pytest.mark.parametrize("handle", [2 ** 40, CALL_FUNCTION, True, "many"])
def test_a_get_sends_no_acknowledgement_to_a_handle_the_target_may_not_name(router, tmp_path,
                                                                               handle):
    # 2**40 fits no message header; at CALL_FUNCTION the controller would be made to send
    # the target a call of its choosing.
    ctx = router.local(python=sys.executable, name="liar")
    source = tmp_path / "source"
    source.write_bytes(b"some data")
    assert ctx.call(hostile.name_get_acknowledgements, handle)
    with pytest.raises(transport.ProtocolError, match="liar: malformed file data: "
                                                      "acknowledgements asked for at"):
        ctx.get(str(source), str(tmp_path / "got"))
    assert not (tmp_path / "got").exists()
    assert ctx.call(os.getpid) > 0


def _through(forward):
    """What a connection to forward's port receives first (b"" when it is closed or reset)."""
    import socket

    with socket.create_connection(("127.0.0.1", forward.port)) as s:
        s.settimeout(30)
        try:
            return s.recv(10)
        except ConnectionResetError:
            return b""


def _through_a_local_forward(ctx):
    with ctx.forward_local(0, 9, "127.0.0.1", local_host="127.0.0.1") as forward:
        return _through(forward)


@pytest.mark.parametrize("handle", [2 ** 40, "x", None])
def test_a_connect_service_at_a_handle_the_target_may_not_name_is_refused(router, caplog,
                                                                          handle):

    ctx = router.local(python=sys.executable, name="liar")
    assert ctx.call(hostile.name_the_connect_service, handle)
    with caplog.at_level(logging.WARNING):
        assert _through_a_local_forward(ctx) == b""  # closed, not left waiting
    assert f"malformed connect service {handle!r}" in caplog.text
    assert "struct.error" not in caplog.text
    assert ctx.call(pow, 2, 5) == 32


@pytest.mark.parametrize("data", [codec.encode("not a word"), codec.encode((1,)), b"\xff"])
def test_a_malformed_tunnel_word_resets_that_tunnel(router, caplog, data):

    ctx = router.local(python=sys.executable, name="liar")
    assert ctx.call(hostile.send_tunnel_words_of, data)
    with caplog.at_level(logging.ERROR):
        with ctx.forward_local(0, 9, "127.0.0.1", local_host="127.0.0.1") as forward:
            assert _through(forward) == b""  # closed, not left open
            deadline = time.monotonic() + 10  # reported once the tunnel is reset
            while "malformed" not in caplog.text:
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.05)
    assert ctx.call(pow, 2, 5) == 32


@pytest.mark.parametrize("handle", [2 ** 40, CALL_FUNCTION])
def test_a_remote_forward_connects_nothing_for_a_handle_the_target_may_not_name(router, caplog,
                                                                                handle):
    import socket

    ctx = router.local(python=sys.executable, name="liar")
    with socket.create_server(("127.0.0.1", 0)) as local_end:
        local_end.setblocking(False)
        assert ctx.call(hostile.announce_accepted_tunnels_as, handle)
        with caplog.at_level(logging.ERROR):
            with ctx.forward_remote(0, local_end.getsockname()[1], local_host="127.0.0.1",
                                    remote_host="127.0.0.1") as forward:
                socket.create_connection(("127.0.0.1", forward.port)).close()
                deadline = time.monotonic() + 10
                while "malformed tunnel announcement" not in caplog.text:
                    assert time.monotonic() < deadline, caplog.text
                    time.sleep(0.05)
        assert f"liar: malformed tunnel announcement: {handle!r}" in caplog.text
        with pytest.raises(BlockingIOError):  # the controller connected nothing here
            local_end.accept()
    assert ctx.call(pow, 2, 5) == 32


@pytest.mark.parametrize("reply", [("ok", 1500, "extra"), 5, ("ok", 2 ** 40), ("ok", True)])
def test_a_malformed_answer_to_a_tunnel_connect_closes_that_connection(router, reply):
    """The connection is closed at once and its slot freed; nothing else is held."""
    import socket

    ctx = router.local(python=sys.executable)
    assert ctx.call(hostile.answer_tunnel_connects_with, reply)
    with ctx.forward_local(0, 9, "127.0.0.1", local_host="127.0.0.1") as forward:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", forward.port)) as s:
                s.settimeout(30)
                assert s.recv(10) == b""  # closed, not left waiting
        deadline = time.monotonic() + 10
        while (forward._pumps or forward._pending) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not forward._pumps and not forward._pending
    assert ctx.call(pow, 2, 5) == 32


@pytest.mark.parametrize("handle", [2 ** 40, CALL_FUNCTION])
def test_a_started_commands_input_goes_to_no_handle_the_target_may_not_name(router, caplog,
                                                                              handle):
    ctx = router.local(python=sys.executable, name="liar")
    ctx.run("true")  # the commands module is there
    assert ctx.call(hostile.name_input_handles, handle)
    command = ctx.start(["cat"])
    with caplog.at_level(logging.ERROR):
        with pytest.raises(BrokenPipeError, match="liar: the command has ended"):
            command.write(b"to a handle of its choosing")
        command.hang_up()
        assert command.wait().exit_code == -signal.SIGHUP
    # Logged by the router's thread before it took the command's end.
    assert "liar: malformed command input word" in caplog.text
    assert ctx.call(pow, 2, 5) == 32


def test_acknowledgements_asked_for_at_an_impossible_handle_are_refused(router):
    ctx = router.local(python=sys.executable)
    ctx.run("true")  # the commands module is there
    assert ctx.call(hostile.name_output_acknowledgements, 2 ** 40)
    with pytest.raises(transport.ProtocolError, match="malformed command output"):
        ctx.run("head -c 3000000 /dev/zero")
    assert ctx.call(pow, 2, 5) == 32
