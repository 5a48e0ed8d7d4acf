"""The ssh method against a real OpenSSH server on loopback."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import transport
from tests import remote_functions as rf
from tests.support.interpreters import find_interpreters
from tests.support.sshd import APP_PASSWORD, LOGIN_SHELLS, SshServer, free_port
from transport.bootstrap import build, shell_join
from transport.methods.ssh import SshMethod


@pytest.fixture(params=["openssh", "paramiko"])
def backend(request):
    """Both ssh backends pass the same connection tests."""
    return request.param


def _ssh(router, sshd, backend, user="tp-plain", address="127.0.0.1", **kwargs):
    kwargs.setdefault("python", "/usr/bin/python3")
    return router.ssh(address, port=sshd.port, user=user, ssh_options=sshd.ssh_options(),
                      backend=backend, **kwargs)


def test_a_connect_that_times_out_hangs_up_its_session(router, sshd, backend, caplog):
    # paramiko's child had no terminate(): giving up failed in the broker (a traceback),
    # and the session, its threads and the late interpreter stayed until the router closed.
    import threading

    directory = Path(tempfile.mkdtemp(prefix="transport-slow-python-"))
    directory.chmod(0o755)
    slow = directory / "python3"
    slow.write_text('#!/bin/sh\nsleep 4\nexec /usr/bin/python3 "$@"\n')
    slow.chmod(0o755)
    try:
        with pytest.raises(transport.ConnectError, match="timed out after 1s waiting for the "
                                                         "interpreter to start"):
            _ssh(router, sshd, backend, python=str(slow), connect_timeout=1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
                t.name.startswith("transport-paramiko") for t in threading.enumerate()):
            time.sleep(0.05)
        assert [t.name for t in threading.enumerate() if t.name.startswith("transport-paramiko")] == []
        assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_call_over_ssh_runs_as_the_login_user(router, sshd, backend):
    ctx = _ssh(router, sshd, backend)
    import pwd

    assert ctx.call(os.getuid) == pwd.getpwnam("tp-plain").pw_uid
    assert ctx.call(os.getcwd) == "/home/tp-plain"
    assert ctx.name == f"tp-plain@127.0.0.1:{sshd.port}"


def test_the_hosts_own_user_and_port_win_over_ssh_options(router, sshd, backend):
    import pwd

    ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-nopw", python="/usr/bin/python3",
                     backend=backend,
                     ssh_options={**sshd.ssh_options(), "User": "tp-plain", "Port": "1"})
    assert ctx.call(os.getuid) == pwd.getpwnam("tp-nopw").pw_uid


def test_second_loopback_address(router, sshd, backend):
    ctx = _ssh(router, sshd, backend, address="127.0.0.2")
    assert ctx.call(pow, 2, 8) == 256


def test_refused_key_is_an_auth_error(router, sshd, backend, tmp_path):
    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    options = {**sshd.ssh_options(), "IdentityFile": str(other_key)}
    with pytest.raises(transport.AuthError) as info:
        router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                   python="/usr/bin/python3", connect_timeout=30, backend=backend)
    assert info.value.host == f"tp-plain@127.0.0.1:{sshd.port}"
    assert "Permission denied" in str(info.value)


def test_several_key_files_are_tried_in_order(router, sshd, backend, tmp_path):
    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    options = {k: v for k, v in sshd.ssh_options().items() if k != "IdentityFile"}
    ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                     identity_file=[str(other_key), str(sshd.client_key)],
                     python="/usr/bin/python3", connect_timeout=30, backend=backend)
    assert ctx.call(pow, 2, 5) == 32


def test_a_missing_key_file_is_named(router, sshd, tmp_path, backend):
    """paramiko reads the key files itself: one that is missing is named as such, not
    taken for a network failure; ssh warns of it and tries the others, and its warning
    is the refusal's cause (it was left out)."""
    options = {k: v for k, v in sshd.ssh_options().items() if k != "IdentityFile"}
    missing = tmp_path / "no-such-key"
    with pytest.raises(transport.ConnectError) as info:
        router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                   identity_file=missing, python="/usr/bin/python3", backend=backend)
    if backend == "paramiko":
        assert f"identity file {missing}: No such file or directory" in str(info.value)
    else:
        assert isinstance(info.value, transport.AuthError)
        cause = str(info.value).partition("Permission denied (publickey). (")[2]
        assert str(missing) in cause and "No such file or directory" in cause, info.value
    # A key file given as a path object works as one given as text (a TypeError before).
    assert router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                      identity_file=sshd.client_key, python=None, backend=backend).call(pow, 2, 3) == 8


def test_a_known_hosts_file_not_there_yet_knows_no_host(router, sshd, tmp_path, backend):
    # paramiko raised FileNotFoundError; OpenSSH takes the file as empty, and accept-new
    # creates it with the key it adds.
    known_hosts = tmp_path / "known_hosts"
    options = {**sshd.ssh_options(), "UserKnownHostsFile": str(known_hosts)}
    del options["StrictHostKeyChecking"]
    with pytest.raises(transport.HostKeyError):
        router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                   python="/usr/bin/python3", backend=backend, check_host_keys="strict")
    assert not known_hosts.exists()
    ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                     python="/usr/bin/python3", backend=backend, check_host_keys="accept-new")
    assert ctx.call(pow, 2, 2) == 4
    assert known_hosts.read_text().count("\n") >= 1
    options["UserKnownHostsFile"] = str(tmp_path / "no-such-directory" / "known_hosts")
    ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                     python="/usr/bin/python3", backend=backend, check_host_keys="accept-new")
    assert ctx.call(pow, 2, 3) == 8


@pytest.mark.parametrize("option", ["Port", "ConnectTimeout"])
def test_paramiko_option_values_that_are_not_numbers_are_named(router, option):
    # They were int()'s and float()'s bare "invalid literal ...".
    with pytest.raises(ValueError, match="ssh_options ConnectTimeout and Port must be numbers"):
        router.ssh("127.0.0.1", backend="paramiko", ssh_options={option: "abc"})


@pytest.mark.parametrize("options, said", [
    ({"StrictHostKeyChecking": "maybe"}, "StrictHostKeyChecking must be one of yes, accept-new"),
    ({"UserKnownHostsFile": "  "}, "UserKnownHostsFile is empty"),
    ({"UserKnownHostsFile": "~/.ssh/known_hosts.%h"}, "does not expand ssh's %-tokens"),
])
def test_paramiko_host_key_options_it_cannot_honour_are_named(router, options, said):
    # A blank file list was an IndexError; %h made one file literally named ...%h.
    with pytest.raises(ValueError, match=re.escape(said)):
        router.ssh("127.0.0.1", backend="paramiko", ssh_options=options)


def test_host_key_options_are_read_as_ssh_reads_them(router, sshd, tmp_path, monkeypatch,
                                                      backend):
    # Values in any case, false for off; `none` for no file (paramiko wrote ./none).
    monkeypatch.chdir(tmp_path)
    options = {**sshd.ssh_options(), "UserKnownHostsFile": str(tmp_path / "empty"),
               "StrictHostKeyChecking": "False"}
    assert router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                      python="/usr/bin/python3", backend=backend).call(pow, 2, 2) == 4
    options.update(UserKnownHostsFile=str(tmp_path / "empty2"), StrictHostKeyChecking="Yes")
    with pytest.raises(transport.HostKeyError):
        router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                   python="/usr/bin/python3", backend=backend)
    if backend == "paramiko":  # (OpenSSH will not accept a key it cannot record)
        options.update(UserKnownHostsFile="none", StrictHostKeyChecking="accept-new")
        assert router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                          python="/usr/bin/python3", backend=backend).call(pow, 2, 3) == 8
    assert set(os.listdir(tmp_path)) <= {"empty"}  # (what OpenSSH records under off)


def test_a_proxy_commands_failure_is_named(router, sshd):
    with pytest.raises(transport.ConnectError) as info:
        router.ssh("127.0.0.1", port=sshd.port, user="tp-plain",
                   ssh_options={**sshd.ssh_options(), "ProxyCommand": "no-such-nc %h %p"})
    assert str(info.value).endswith("exec: no-such-nc: not found)"), info.value


def test_connection_refused_is_a_connect_error_with_sshs_message(router, sshd, backend):
    port = free_port()
    with pytest.raises(transport.ConnectError) as info:
        router.ssh("127.0.0.1", port=port, user="tp-plain", ssh_options=sshd.ssh_options(),
                   connect_timeout=30, backend=backend)
    assert not isinstance(info.value, transport.AuthError)
    assert "Connection refused" in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)


def test_unknown_host_is_a_connect_error(router, sshd, backend):
    with pytest.raises(transport.ConnectError) as info:
        router.ssh("no-such-host.invalid", user="tp-plain", ssh_options=sshd.ssh_options(),
                   connect_timeout=30, backend=backend)
    assert "Could not resolve hostname" in str(info.value)
    assert "no-such-host.invalid" in str(info.value)


def test_unreachable_host_times_out_with_the_clients_own_reason(router, sshd, backend):
    # A listening socket that never answers: TCP connects, ssh waits for a banner. The
    # OpenSSH client's ConnectTimeout is connect_timeout too: its reason is the one given
    # (it was lost when our own deadline, at the same moment, came first).
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        with pytest.raises(transport.ConnectError) as info:
            router.ssh("127.0.0.1", port=silent.getsockname()[1], user="tp-plain",
                       ssh_options=sshd.ssh_options(), connect_timeout=2, backend=backend)
        expected = {"openssh": ": Connection timed out during banner exchange",
                    "paramiko": "timed out waiting for its SSH banner"}[backend]
        assert expected in str(info.value)
        assert "interpreter" not in str(info.value)
    finally:
        silent.close()


def test_a_server_that_hangs_up_at_once_is_said_to_have_closed(sshd, backend):
    # Not "timed out" (the paramiko backend said so), and with no traceback from paramiko
    # printed by logging's last resort in a program that set up no logging.
    code = f"""
import socket, threading, transport
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(8)
def hang_up():
    while True:
        server.accept()[0].close()
threading.Thread(target=hang_up, daemon=True).start()
with transport.Router() as router:
    try:
        router.ssh("127.0.0.1", port=server.getsockname()[1], user="tp-plain",
                   ssh_options={sshd.ssh_options()!r}, connect_timeout=10, backend={backend!r})
    except transport.ConnectError as e:
        print(e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert re.search("Connection (closed|reset)", out.stdout) and "timed out" not in out.stdout, \
        out.stdout
    assert out.stderr == ""


def test_an_unknown_or_changed_host_key_is_a_host_key_error(router, sshd, backend, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    options = {**sshd.ssh_options(), "UserKnownHostsFile": str(known_hosts)}
    with pytest.raises(transport.HostKeyError) as info:
        router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                   backend=backend)
    assert not info.value.changed and isinstance(info.value, transport.ConnectError)
    assert str(info.value).startswith(f"tp-plain@127.0.0.1:{sshd.port}: its host key is unknown: ")
    assert str(info.value).endswith("Add it to known_hosts (ssh-keyscan shows it), or accept "
                                    "new keys (StrictHostKeyChecking=accept-new).")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, key = (tmp_path / "other_key.pub").read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key}\n")
    with pytest.raises(transport.HostKeyError) as info:
        router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                   backend=backend)
    assert info.value.changed
    assert "its host key has changed (a reinstalled host, or someone in the middle): " in str(
        info.value)
    # Where the old key is (ssh's words), or both keys' fingerprints (paramiko's).
    assert (f"Offending ED25519 key in {known_hosts}:1." in str(info.value)
            if backend == "openssh" else "known as SHA256:" in str(info.value))


def _key_line(tmp_path, names: str, key_type: str = "ed25519") -> str:
    """A known_hosts line giving names a key of a host that does not exist."""
    path = tmp_path / f"key-{len(list(tmp_path.glob('key-*')))}"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(path)], check=True)
    return names + " " + " ".join(path.with_suffix(".pub").read_text().split()[:2]) + "\n"


def test_accept_new_adds_a_line_and_keeps_the_rest_of_the_file(router, sshd, tmp_path, backend):
    # paramiko's own accept-new rewrote the whole file from what it had parsed: comments,
    # markers, keys of types it does not know and the grouping of names were lost.
    known_hosts = tmp_path / "known_hosts"
    kept = ("# the web fleet\n"
            + _key_line(tmp_path, "web1.example.com,10.0.0.1")
            + "@cert-authority *.example.com " + _key_line(tmp_path, "").lstrip()
            + "old.example.com sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t\n"
            + "@revoked " + _key_line(tmp_path, "*"))
    known_hosts.write_text(kept)
    options = {**sshd.ssh_options(), "UserKnownHostsFile": str(known_hosts),
               "StrictHostKeyChecking": "accept-new"}
    assert router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                      python="/usr/bin/python3", backend=backend).call(pow, 2, 2) == 4
    text = known_hosts.read_text()
    assert text.startswith(kept) and len(text.splitlines()) > len(kept.splitlines()), text
    options["StrictHostKeyChecking"] = "yes"  # the key it added is known from now on
    assert router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                      python="/usr/bin/python3", backend=backend).call(pow, 2, 3) == 8


def test_hashed_names_in_known_hosts_are_matched(router, sshd, tmp_path, backend):
    known_hosts = tmp_path / "known_hosts"
    others = "".join(_key_line(tmp_path, f"host{i}.example.com") for i in range(3))
    known_hosts.write_text(others + sshd.known_hosts.read_text())
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known_hosts)], check=True,
                   capture_output=True)
    assert "127.0.0.1" not in known_hosts.read_text()
    options = {**sshd.ssh_options(), "UserKnownHostsFile": str(known_hosts)}
    assert router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                      python="/usr/bin/python3", backend=backend).call(pow, 2, 2) == 4


def test_known_hosts_files_are_read_in_order_and_the_first_gets_new_keys(router, sshd, tmp_path,
                                                                         backend):
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text(_key_line(tmp_path, "web1.example.com"))
    second.write_text(sshd.known_hosts.read_text())
    options = {**sshd.ssh_options(), "UserKnownHostsFile": f"{first} {second}"}
    assert router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", ssh_options=options,
                      python="/usr/bin/python3", backend=backend).call(pow, 2, 2) == 4
    second.write_text("")
    options["StrictHostKeyChecking"] = "accept-new"
    assert router.ssh("127.0.0.2", port=sshd.port, user="tp-plain", ssh_options=options,
                      python="/usr/bin/python3", backend=backend).call(pow, 2, 3) == 8
    found = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.2]:{sshd.port}", "-f", str(first)],
                           capture_output=True, text=True)
    assert found.returncode == 0 and second.read_text() == "", first.read_text()


def test_a_host_is_checked_by_the_key_types_known_for_it(router, test_users, tmp_path, backend):
    # paramiko asked for the first known type only: a stale RSA key listed first, the
    # server chose ed25519, not known here, and a good host looked changed.
    workdir = Path(tempfile.mkdtemp(prefix="transport-sshd-"))
    try:
        with SshServer(workdir, ("127.0.0.1",), more_host_keys=("ecdsa",)) as server:
            name = f"[127.0.0.1]:{server.port}"
            ecdsa = " ".join((workdir / "host_key_ecdsa.pub").read_text().split()[:2])
            server.known_hosts.write_text(_key_line(tmp_path, name, "rsa") + f"{name} {ecdsa}\n")
            ctx = router.ssh("127.0.0.1", port=server.port, user="tp-plain", backend=backend,
                             ssh_options=server.ssh_options(), python="/usr/bin/python3")
            assert ctx.call(pow, 2, 2) == 4
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_hosts_accepted_at_once_are_all_kept(router, sshd, tmp_path, backend):
    # Each of paramiko's saves truncated the file and wrote what its connection knew.
    known_hosts = tmp_path / "known_hosts"
    options = {**sshd.ssh_options(), "UserKnownHostsFile": str(known_hosts),
               "StrictHostKeyChecking": "accept-new"}
    hosts = [f"tp-plain@{address}:{sshd.port}" for address in sshd.addresses]
    group = transport.Group(router, hosts * 3, ssh_options=options, python="/usr/bin/python3",
                            backend=backend)
    assert not group.call(pow, 2, 2).failed
    if backend == "paramiko":  # (not asked of OpenSSH: its clients are separate processes)
        assert len(known_hosts.read_text().splitlines()) == len(hosts), known_hosts.read_text()
    for address in sshd.addresses:  # (OpenSSH hashes the names it adds, as configured here)
        found = subprocess.run(["ssh-keygen", "-F", f"[{address}]:{sshd.port}", "-f",
                                str(known_hosts)], capture_output=True, text=True)
        assert found.returncode == 0, known_hosts.read_text()
    options["StrictHostKeyChecking"] = "yes"
    group = transport.Group(router, hosts, ssh_options=options, python="/usr/bin/python3",
                            backend=backend)
    assert not group.call(pow, 2, 3).failed


def test_a_host_that_stops_answering_fails_its_calls(router, sshd, backend):
    # The sshd process serving the connection is stopped: the kernel still acknowledges
    # TCP, but nothing answers any more, as from a host whose sshd hangs. The keepalives
    # notice (1 s x 2 here, not 15 s x 3).
    import signal

    ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", python="/usr/bin/python3",
                     ssh_options={**sshd.ssh_options(), "ServerAliveInterval": "1",
                                  "ServerAliveCountMax": "2"}, backend=backend)
    session = ctx.pid  # up to sshd's process for this session (sshd-session from 9.8 on)
    while _command_of(session) not in ("sshd", "sshd-session"):
        session = _parent_of(session)
    assert session not in {p.pid for p in sshd.processes}, "that is the listening sshd"
    os.kill(session, signal.SIGSTOP)
    try:
        with pytest.raises(transport.Disconnected) as info:
            ctx.call_async(pow, 2, 2).result(timeout=60)
        # Why, in ssh's words (stock ssh's status and message; paramiko's alike).
        assert str(info.value) == {
            "openssh": f"{ctx.name}: disconnected: ssh exited with status 255: "
                       "Timeout, server 127.0.0.1 not responding.",
            "paramiko": f"{ctx.name}: disconnected: the ssh session exited with status 255: "
                        "Timeout, server 127.0.0.1 not responding."}[backend]
    finally:
        os.kill(session, signal.SIGKILL)
        os.kill(session, signal.SIGCONT)


def test_keepalives_answered_keep_an_idle_connection_open(router, sshd, backend):
    # Little patience (keepalives unanswered for about two seconds fail the connection):
    # a healthy server's answers keep an idle connection open.
    ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", python="/usr/bin/python3",
                     ssh_options={**sshd.ssh_options(), "ServerAliveInterval": "1",
                                  "ServerAliveCountMax": "2"}, backend=backend)
    time.sleep(4.5)
    assert ctx.alive and ctx.call(pow, 2, 3) == 8


def _command_of(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(") ")[2].split()[1])


def test_contexts_sharing_an_ssh_master_outlive_the_context_that_started_it(router, sshd):
    # ControlMaster auto without ControlPersist (an operator's ~/.ssh/config): the first
    # context's ssh became the master of the others', and was killed (REAP_PATIENCE after
    # its interpreter exited) while serving them; an interactive ssh through it too.
    from tests.support.processes import wait_gone

    control = tempfile.mkdtemp(prefix="tp-cm-")  # a socket's path must be short
    try:
        options = {**sshd.ssh_options(), "ControlMaster": "auto",
                   "ControlPath": os.path.join(control, "%C")}
        first, second = (router.ssh("127.0.0.1", port=sshd.port, user="tp-plain",
                                    python="/usr/bin/python3", ssh_options=options)
                         for _ in range(2))
        first_ssh = router._connections[first.context_id].process.pid
        first.shutdown()
        assert wait_gone(first_ssh)
        assert second.call(pow, 2, 2) == 4
    finally:
        router.close()
        shutil.rmtree(control, ignore_errors=True)


def test_ssh_debug_output_neither_muddles_an_error_nor_ends_log_lines_with_a_mark(
        router, sshd, caplog):
    # LogLevel DEBUG in an operator's config: the error quoted a debug line (and ~80 more),
    # and each line ssh wrote (ending \r\n) was logged with a '?' at its end.
    import logging

    caplog.set_level(logging.INFO, logger="transport.stderr")
    with pytest.raises(transport.ConnectError) as info:
        router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", python="/nonexistent/python3",
                   ssh_options={**sshd.ssh_options(), "LogLevel": "DEBUG"})
    assert "debug1" not in str(info.value) and "/nonexistent/python3" in str(info.value)
    logged = [r.getMessage() for r in caplog.records if r.name == "transport.stderr"]
    assert any("debug1: " in line for line in logged)
    assert not [line for line in logged if line.endswith("?")]


LINGERING_SSH = """
import json, sys, transport
port, options, marker = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
router = transport.Router()
try:  # SessionType none: ssh logs in, runs nothing and never exits
    router.ssh("127.0.0.1", port=port, user="tp-plain", python="/usr/bin/python3",
               ssh_options={**options, "SessionType": "none", "SetEnv": marker})
except transport.ConnectError as e:
    print("refused")
router.close()
"""


def test_a_program_that_closes_its_router_and_ends_leaves_no_ssh_running(sshd):
    # The ssh still running at the close was handed to a daemon thread that kills it two
    # seconds later: a program ending sooner (the CLI) left it running for ever.
    import uuid

    from tests.support.processes import wait_gone

    marker = f"TP_MARK={uuid.uuid4().hex}"
    result = subprocess.run([sys.executable, "-c", LINGERING_SSH, str(sshd.port),
                             json.dumps(sshd.ssh_options()), marker],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout == "refused\n", result.stderr
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    try:
        assert all(wait_gone(int(pid), limit=5) for pid in left), "ssh left running"
    finally:
        for pid in left:
            subprocess.run(["kill", "-9", pid], capture_output=True)


def test_an_interpreter_killed_there_is_not_only_sshs_status_255(router, sshd, backend):
    # ssh says nothing, and exits with the status it has for a lost connection too (root's
    # login shell, bash, execs the interpreter; dash, tp-plain's, waits and says "Killed").
    import signal

    ctx = _ssh(router, sshd, backend, user="root")
    os.kill(ctx.pid, signal.SIGKILL)
    with pytest.raises(transport.Disconnected) as info:
        ctx.call_async(pow, 2, 2).result(timeout=60)
    program = {"openssh": "ssh", "paramiko": "the ssh session"}[backend]
    # (paramiko's socket pair may first say "read failed: Connection reset by peer; ")
    assert str(info.value).startswith(f"{ctx.name}: disconnected: ")
    assert str(info.value).endswith(f"{program} exited with status 255 (and said no more: the "
                                    "interpreter there was killed by a signal, as kill -9 or "
                                    "the OOM killer do, or the connection dropped)")


def test_a_process_a_call_started_does_not_hide_a_killed_interpreter(router, sshd, backend,
                                                                     caplog):
    # It shared the interpreter's stderr, which kept the ssh session open: the loss was
    # seen only when that process ended (never, for a service).
    import logging
    import signal

    marker = f"600.{os.getpid()}{len(backend)}"
    ctx = _ssh(router, sshd, backend, user="root")
    try:
        with caplog.at_level(logging.INFO, logger="transport.stderr"):
            assert ctx.call(rf.start_in_the_background, marker) == 0
            deadline = time.monotonic() + 10  # its stderr and the reply come apart
            while (f"{ctx.name}: from a child" not in [r.getMessage() for r in caplog.records]
                   and time.monotonic() < deadline):
                time.sleep(0.05)
        assert f"{ctx.name}: from a child" in [r.getMessage() for r in caplog.records]
        os.kill(ctx.pid, signal.SIGKILL)
        with pytest.raises(transport.Disconnected, match="status 255"):
            ctx.call_async(pow, 2, 2).result(timeout=30)
    finally:
        subprocess.run(["pkill", "-f", f"^sleep {marker}$"])


def test_missing_python_names_the_path(router, sshd, backend):
    with pytest.raises(transport.ConnectError) as info:
        _ssh(router, sshd, backend, python="/usr/bin/python9.9")
    assert "/usr/bin/python9.9" in str(info.value)
    assert "127.0.0.1" in str(info.value)


def test_a_program_that_is_not_python_is_named_as_such(router, sshd, backend):
    with pytest.raises(transport.ConnectError, match="'/bin/true' exited at once .status 0. "
                                                     "without running the bootstrap: is it a "
                                                     "Python interpreter"):
        _ssh(router, sshd, backend, python="/bin/true")
    with pytest.raises(transport.ConnectError, match="'/bin/true' exited at once"):
        router.local(python="/bin/true")
    # Nor with another status (it was "the connection closed before the interpreter started").
    with pytest.raises(transport.ConnectError, match="'/bin/false' exited at once .status 1. "
                                                     "without running the bootstrap: is it a "
                                                     "Python interpreter"):
        router.local(python="/bin/false")
    # Over ssh the login shell may be what ran no command.
    with pytest.raises(transport.ConnectError, match="'/bin/false' exited at once .status 1. "
                                                     "without running the bootstrap, or the login "
                                                     "shell did not start it: is it a Python "
                                                     "interpreter, and the user's shell one that "
                                                     "runs commands .not /bin/false.?"):
        _ssh(router, sshd, backend, python="/bin/false")
    # A program that echoes its arguments (the first stage among them) is not taken for a
    # Python whose bootstrap was cut short.
    with pytest.raises(transport.ConnectError) as info:
        router.local(python="/usr/bin/perl")
    assert "Can't open perl script" in str(info.value)
    assert "garbled or cut short" not in str(info.value)


def test_the_first_python_found_of_a_list_runs(router, sshd, backend):
    ctx = _ssh(router, sshd, backend, python=["/nowhere/python3", "no-such-python", "python3"])
    assert ctx.python.endswith("python3") and ctx.call(os.path.exists, ctx.python)
    with pytest.raises(transport.ConnectError) as info:
        _ssh(router, sshd, backend, python=["/nowhere/python3", "no-such-python"])
    assert "no usable Python interpreter at any of /nowhere/python3, no-such-python" in str(info.value)
    assert "transport: no Python interpreter found" not in str(info.value)  # named once


@pytest.mark.parametrize("user", sorted(LOGIN_SHELLS))
def test_a_login_shell_other_than_sh_starts_the_interpreter(router, sshd, backend, user):
    # ssh and su hand the command line to the user's login shell. fish reads \\ inside
    # single quotes as one backslash, and the first stage had pairs of them: a fish
    # user's start failed with "source code string cannot contain null bytes".
    ctx = _ssh(router, sshd, backend, user=user)
    assert ctx.call(os.getuid) == pwd.getpwnam(user).pw_uid
    assert ctx.call(os.getenv, "SHELL") == LOGIN_SHELLS[user]
    listed = _ssh(router, sshd, backend, user=user, python=["/nowhere/python3", "python3"])
    assert listed.python.endswith("python3")
    if backend == "openssh":  # su's way in is the same through either
        app = router.su(via=ctx, user=user, password=APP_PASSWORD, python=["nosuch", "python3"])
        assert app.call(os.getuid) == pwd.getpwnam(user).pw_uid


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash", *sorted(LOGIN_SHELLS.values())])
def test_a_quoted_command_line_keeps_every_word_in_every_login_shell(test_users, shell):
    # fish reads \\ and \' inside single quotes as escapes; POSIX shells do not.
    words = ["a\\\\b", "a\\'b", "end\\", "'", "it's", "a\\nb", "\\", "$HOME `id` \"q\" ; | &",
             "~/x", "tab\there", "", "{a,b}", "*"]
    line = shell_join([sys.executable, "-c", "import sys; print(repr(sys.argv[1:]))", *words])
    out = subprocess.run([shell, "-c", line], capture_output=True, text=True, timeout=30)
    assert (out.stdout, out.stderr) == (repr(words) + "\n", "")


def test_a_controlmaster_connection_is_shared_and_left_to_persist(sshd):
    # ~/.ssh/config's ControlMaster applies: the first connection's ssh becomes a master
    # that outlives it (ControlPersist), and the next one goes through that master. Our
    # close must not wait for the master, which holds no pipe of ours.
    directory = tempfile.mkdtemp(prefix="tp-cm-")  # a socket's path must be short
    control = os.path.join(directory, "%C")
    options = {**sshd.ssh_options(), "ControlMaster": "auto", "ControlPath": control,
               "ControlPersist": "120"}
    check = ["ssh", "-o", f"ControlPath={control}", "-p", str(sshd.port), "tp-plain@127.0.0.1"]
    try:
        pids = []
        for _ in range(2):
            started = time.monotonic()
            with transport.Router() as router:
                ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-plain",
                                 python="/usr/bin/python3", ssh_options=options)
                pids.append(ctx.call(os.getpid))
                assert ctx.run("echo shared").stdout == b"shared\n"
            assert time.monotonic() - started < 60  # it did not wait for the master to end
            master = subprocess.run([*check, "-O", "check"], capture_output=True, text=True)
            assert master.returncode == 0 and "Master running" in master.stderr
        assert pids[0] != pids[1]
    finally:
        subprocess.run([*check, "-O", "exit"], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def test_python_is_looked_for_on_the_search_path_given(router, sshd, backend):
    # As salt-ssh's shim sets PATH before it looks: the first python3 on search_path runs,
    # and starts with that PATH. Variables and a leading ~ are expanded on the host;
    # nothing in the value can run a command there.
    directory = tempfile.mkdtemp(prefix="transport-search-path-")
    planted = os.path.join(directory, "ran")
    try:
        os.chmod(directory, 0o755)
        os.symlink("/usr/bin/python3", os.path.join(directory, "python3"))
        ctx = _ssh(router, sshd, backend, python="python3",
                   search_path=f"{directory}:$(touch {planted}):`touch {planted}`:$PATH")
        assert ctx.python == os.path.join(directory, "python3")
        path = ctx.call(os.getenv, "PATH").split(":")
        assert path[:3] == [directory, f"$(touch {planted})", f"`touch {planted}`"]
        assert path[3:] and path[3] != "$PATH"  # the login shell's PATH, expanded
        ctx = _ssh(router, sshd, backend, python="/usr/bin/python3", search_path="~/nowhere:${HOME}/x")
        home = ctx.call(os.path.expanduser, "~")
        assert ctx.call(os.getenv, "PATH") == f"{home}/nowhere:{home}/x"
    except transport.ConnectError as e:
        raise AssertionError(f"no python3 found on the search path: {e}") from None
    finally:
        assert not os.path.exists(planted)
        shutil.rmtree(directory)


def test_unsupported_python_says_which_version(router, sshd, backend):
    # A real interpreter that reports 3.5 to the first stage, which must refuse it.
    directory = tempfile.mkdtemp(prefix="transport-fake-python-")
    try:
        os.chmod(directory, 0o755)
        fake = os.path.join(directory, "python3.5")
        with open(fake, "w") as f:
            f.write("#!/usr/bin/python3\nimport sys\nsys.version_info = (3, 5, 10, 'final', 0)\n"
                    "exec(sys.argv[2])\n")
        os.chmod(fake, 0o755)
        with pytest.raises(transport.ConnectError) as info:
            _ssh(router, sshd, backend, python=fake)
        assert "unsupported Python 3.5.10" in str(info.value)
        assert not isinstance(info.value, transport.AuthError)
    finally:
        shutil.rmtree(directory)


def test_a_command_error_is_not_mistaken_for_refused_authentication(router, sshd, backend):
    with pytest.raises(transport.ConnectError) as info:
        _ssh(router, sshd, backend, python="/root/.pyenv/versions/3.11.7/bin/python")  # not searchable
    assert not isinstance(info.value, transport.AuthError)
    assert "/root/.pyenv/versions/3.11.7/bin/python" in str(info.value)


def test_client_options_are_few_and_overridable():
    argv = SshMethod("web1", python="/usr/bin/python3").argv(build())
    assert argv[:2] == ["ssh", "-T"]
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert "Compression=no" in options and "BatchMode=yes" in options
    assert "ServerAliveInterval=15" in options and "ServerAliveCountMax=3" in options
    assert not any(o.startswith("StrictHostKeyChecking") for o in options)  # user's config rules
    argv = SshMethod("web1", compression=True, check_host_keys="accept-new",
                     ssh_options={"BatchMode": "no"}).argv(build())
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert "Compression=yes" in options and "StrictHostKeyChecking=accept-new" in options
    assert "BatchMode=no" in options and "BatchMode=yes" not in options
    assert argv[-2] == "web1" and argv[-3] == "--"
    with pytest.raises(ValueError):
        SshMethod("web1", check_host_keys="sometimes")


def test_a_controller_connects_without_importing_heavy_modules(sshd, tmp_path):
    # Each of these costs a cold start milliseconds before ssh is even spawned
    # (re and enum alone ~5 ms); they once came back through shlex and importlib.util.
    heavy = ["re", "enum", "shlex", "importlib.util", "contextlib", "tokenize", "subprocess",
             "threading", "json", "hashlib", "logging"]
    script = f"""if True:
        import os, sys
        before = set(sys.modules)
        import transport
        with transport.Router() as router:
            router.ssh("127.0.0.1", port={sshd.port}, user="tp-plain", python="/usr/bin/python3",
                       ssh_options={sshd.ssh_options()!r}).call(os.getpid)
        print(sorted(set({heavy!r}) & (set(sys.modules) - before)))
    """
    # In a cache of its own, the first two runs build the payloads (the source, then the
    # byte code once the target's tag is known); -S: no site-packages hooks importing re.
    root = os.path.dirname(os.path.dirname(transport.__file__))
    for _ in range(3):
        result = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True,
                                text=True, timeout=60, cwd=root,
                                env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


INTERPRETERS = find_interpreters()


@pytest.mark.parametrize("label", sorted(INTERPRETERS))
def test_every_interpreter_over_ssh_as_root(router, sshd, backend, label):
    ctx = _ssh(router, sshd, backend, user="root", python=INTERPRETERS[label])
    assert ctx.call(os.getuid) == 0
    assert ctx.call(os.path.join, "a", "b") == "a/b"
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(os.stat, "/nonexistent")
    assert "No such file" in info.value.remote_message
    if label != "system":
        assert ctx.python_version.startswith(label + ".")


def test_a_reply_that_comes_with_stderr_is_never_held_back(router, sshd, backend):
    # Each call writes a line on stderr and returns: the line and the reply arrive
    # together. paramiko's channel.fileno() pipe could end up clear with the reply
    # buffered (within a few hundred calls here), which then waited for the target's
    # next message: for ever when there was none (a Fabric task's last sudo command).
    ctx = _ssh(router, sshd, backend)
    for _ in range(3000):
        assert ctx.call_async(os.write, 2, b"a line on stderr\n").result(timeout=30) == 17


def test_paramiko_sessions_leave_no_descriptor_open_once_ended(router, sshd):
    # The channel is closed when its session ends: two descriptors per context (the
    # pipe a channel makes once select()ed on) stayed until garbage collection.
    def open_fds():
        return len(os.listdir("/proc/self/fd"))

    _ssh(router, sshd, "paramiko").shutdown()  # paramiko's own first-use descriptors
    before = open_fds()
    for _ in range(5):
        _ssh(router, sshd, "paramiko").shutdown()
    deadline = time.monotonic() + 30
    while open_fds() > before:
        assert time.monotonic() < deadline, f"{open_fds() - before} descriptors more"
        time.sleep(0.1)


def test_paramiko_backend_refuses_what_it_cannot_honour(router):
    with pytest.raises(ValueError, match="ProxyJump"):
        router.ssh("web1", ssh_options={"ProxyJump": "bastion"}, backend="paramiko")
    with pytest.raises(ValueError, match="controller only"):
        router.ssh("web1", backend="paramiko", via=router.local())


@pytest.mark.parametrize("host, port, words", [
    ("", None, "host must be a host name or address, not ''"),
    ("web1", "22 -oProxyCommand=x", "port must be a number from 1 to 65535, not '22 -oProxy"),
    ("web1", 0, "port must be a number from 1 to 65535, not 0"),  # not "the default, 22"
    ("web1", 70000, "port must be a number from 1 to 65535, not 70000"),
])
def test_a_host_or_port_no_client_could_use_is_refused_at_once(router, host, port, words, backend):
    with pytest.raises(ValueError) as info:
        router.ssh(host, port=port, backend=backend)
    assert str(info.value).startswith(words)


def test_ssh_options_take_python_values_as_ssh_config_does(router, sshd, backend):
    # YAML's `Compression: yes` is True: OpenSSH refused "Compression=True", and the
    # paramiko backend took it for "no".
    from transport.methods.ssh import SshMethod

    options = {**sshd.ssh_options(), "Compression": True, "ServerAliveInterval": 30}
    ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", python="/usr/bin/python3",
                     ssh_options=options, backend=backend)
    assert ctx.call(os.getuid) > 0
    method = SshMethod("web1", ssh_options={"Compression": True, "ForwardAgent": False,
                                            "ServerAliveInterval": 30})
    assert {key: method.client_options()[key] for key in method.ssh_options} == {
        "Compression": "yes", "ForwardAgent": "no", "ServerAliveInterval": "30"}


@pytest.mark.parametrize("arguments, error, words", [
    ({"ssh_options": ["IdentityFile", "key"]}, TypeError,
     "ssh_options is a dict of ssh_config names to values, not list"),
    ({"ssh_options": {"IdentityFile": None}}, TypeError,
     "ssh_options['IdentityFile'] is NoneType: values are text, numbers or True/False"),
    ({"user": 1001}, TypeError, "user is a user name, not int"),
    ({"connect_timeout": "10"}, TypeError, "connect_timeout is a number of seconds, not str"),
    ({"connect_timeout": 0}, ValueError, "connect_timeout is a number of seconds above 0, not 0"),
    ({"python": []}, ValueError, "ssh(python=[]) names no interpreter"),
    ({"python": ["python3", None]}, TypeError,
     "ssh(python=[...]) holds interpreters' paths or names, not ['python3', None]"),
    ({"host": "@web1"}, ValueError, "'@web1' is not [user@]host"),
    ({"host": "deploy@"}, ValueError, "'deploy@' is not [user@]host"),
    ({"host": "deploy@web1", "user": "root"}, ValueError,
     "two users for 'deploy@web1': 'root' (user=) and 'deploy'"),
    ({"host": "web1:2222"}, ValueError, "'web1:2222': give the port as port=2222"),
])
def test_connect_arguments_no_client_could_use_are_refused_at_once(router, backend, arguments,
                                                                     error, words):
    # They failed deep inside (a str timeout as a traceback on the router's thread).
    arguments = {"host": "web1", **arguments}
    with pytest.raises(error) as info:
        router.ssh(backend=backend, **arguments)
    assert str(info.value) == words


def test_a_user_given_in_the_host_logs_in_as_that_user(router, sshd, backend):
    # ssh takes user@host; paramiko looked "tp-plain@127.0.0.1" up as a host name.
    ctx = _ssh(router, sshd, backend, user=None, address="tp-plain@127.0.0.1")
    assert ctx.name == f"tp-plain@127.0.0.1:{sshd.port}"
    assert ctx.call(os.getuid) == pwd.getpwnam("tp-plain").pw_uid
    assert _ssh(router, sshd, backend, address="tp-plain@127.0.0.1").name == ctx.name


def test_commands_get_the_locale_settings_sshd_gave(router, sshd, backend):
    # Python 3.7+ started without a locale sets LC_CTYPE=C.UTF-8 for itself (PEP 538);
    # the commands it runs must see what a command run by sshd sees.
    probe = "echo LANG=${LANG-unset} LC_ALL=${LC_ALL-unset} LC_CTYPE=${LC_CTYPE-unset}"
    plain = subprocess.run(["ssh", *sshd.ssh_args("tp-plain"), probe], capture_output=True,
                           text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert plain.returncode == 0, plain.stderr
    ctx = _ssh(router, sshd, backend)
    assert ctx.run(probe).stdout.decode() == plain.stdout
