"""Group: many hosts in parallel; a failing host carries its error and stops nothing."""

from __future__ import annotations

import collections
import os
import subprocess
import time

import pytest

import transport
from transport.core import codec
from transport.group import parse_host

Outcome = collections.namedtuple("Outcome", "exit_code")

PY = "/usr/bin/python3"


@pytest.mark.parametrize("spec, expected", [
    ("web1", (None, "web1", None)),
    ("deploy@web1:2222", ("deploy", "web1", 2222)),
    ("[::1]:22", (None, "::1", 22)),
    ("u@[fe80::1]", ("u", "fe80::1", None)),
])
def test_parse_host(spec, expected):
    assert parse_host(spec) == expected


def test_hosts_given_as_one_string_are_comma_separated_and_checked_at_once(router, sshd):
    # A string was iterated: "web1" made a group of the hosts w, e, b and 1.
    one = f"tp-plain@127.0.0.1:{sshd.port}"
    group = transport.Group(router, one, python=PY, ssh_options=sshd.ssh_options())
    assert group.hosts == [one]
    assert group.call(os.getuid)[one].ok
    assert transport.Group(router, "web1, deploy@web2:2222,").hosts == ["web1", "deploy@web2:2222"]
    with pytest.raises(ValueError, match="'web1:http': the port must be a number"):
        transport.Group(router, ["web2", "web1:http"])
    with pytest.raises(TypeError, match="hosts are '\\[user@\\]host\\[:port\\]' strings, not 3"):
        transport.Group(router, ["web2", 3])


@pytest.fixture
def hosts(sshd):
    good = [f"tp-plain@{address}:{sshd.port}" for address in sshd.addresses]
    # One host where nothing listens, one whose key is refused.
    return good, "tp-plain@127.0.0.9:1", f"tp-nosuchuser@127.0.0.1:{sshd.port}"


def test_a_host_slow_to_connect_holds_up_no_other(router, sshd, hosts):
    # Every task waited until every host was connected (or had failed to): one silent
    # host held a fleet's work back for connect_timeout.
    import socket
    import threading

    good, _, _ = hosts
    with socket.socket() as silent:  # accepts, never speaks: ssh waits for its banner
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        given_up = threading.Event()

        def watch() -> None:
            connection, _ = silent.accept()
            connection.recv(1024)  # ssh's version line; then nothing, until it gives up
            while connection.recv(1024):
                pass
            given_up.set()

        threading.Thread(target=watch, daemon=True).start()
        slow = f"tp-plain@127.0.0.1:{silent.getsockname()[1]}"
        group = transport.Group(router, [slow, good[0]], python=PY, connect_timeout=10,
                                ssh_options=sshd.ssh_options())
        results = group.each(lambda ctx: (ctx.call(os.getpid), given_up.is_set()))
    assert results[good[0]].ok and results[good[0]].value[1] is False  # ran while slow waited
    assert isinstance(results[slow].error, transport.ConnectError)
    assert results[slow].seconds >= 10  # its attempt to connect is its time


def test_one_group_used_from_several_threads_connects_each_host_once(router, sshd, hosts):
    import threading

    good, _, _ = hosts
    group = transport.Group(router, good, python=PY, ssh_options=sshd.ssh_options())
    threads = [threading.Thread(target=group.call, args=(os.getpid,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(router.contexts()) == len(good) == len(group.contexts)


def test_fan_out_with_failing_hosts(router, sshd, hosts, tmp_path):
    good, unreachable, refused = hosts
    group = transport.Group(router, [*good, unreachable, refused], python=PY,
                            ssh_options=sshd.ssh_options(), connect_timeout=30)
    results = group.run("echo $SSH_CONNECTION | cut -d' ' -f3")
    assert list(results) == [*good, unreachable, refused]
    for spec, address in zip(good, sshd.addresses):
        assert results[spec].ok
        assert results[spec].value.stdout.decode().strip() == address
    assert isinstance(results[unreachable].error, transport.ConnectError)
    assert "Connection refused" in str(results[unreachable].error)
    assert isinstance(results[refused].error, transport.AuthError)
    assert results[refused].seconds > 0.02  # its attempt: a key exchange, then refused
    assert set(results.failed) == {unreachable, refused}

    calls = group.call(os.getuid)
    assert all(calls[spec].ok for spec in good) and not calls[unreachable].ok

    local = tmp_path / "file.txt"
    local.write_text("fan-out\n")
    group.run("rm -f /home/tp-plain/fanout.txt")
    put = group.put(str(local), "/home/tp-plain/fanout.txt")
    assert set(put.succeeded) == set(good) and set(put.failed) == {unreachable, refused}
    fetched = group.get("/home/tp-plain/fanout.txt", str(tmp_path / "got-{host}.txt"))
    assert set(fetched.succeeded) == set(good)
    assert sorted(p.name for p in tmp_path.glob("got-*")) == sorted(
        f"got-{spec}.txt" for spec in good)
    assert all(p.read_text() == "fan-out\n" for p in tmp_path.glob("got-*"))
    group.run("rm -f /home/tp-plain/fanout.txt")


def test_only_a_commands_status_fails_a_host():
    # A value a call returns may have an exit_code field of its own: it is data.
    result = transport.HostResult("h", codec.decode(codec.encode(Outcome(exit_code=3))))
    assert result.ok and result.value.exit_code == 3
    assert not transport.HostResult("h", transport.CommandResult("false", 3, b"", b"")).ok


def test_a_failing_command_is_a_failed_host_result(router, sshd, hosts):
    good, _, _ = hosts
    group = transport.Group(router, good[:2], python=PY, ssh_options=sshd.ssh_options())
    results = group.run("test $(hostname -I 2>/dev/null | wc -c) -ge 0 && exit 3")
    assert list(results) == good[:2]
    assert all(r.value.exit_code == 3 and not r.ok for r in results.values())


def test_fan_out_through_a_bastion(router, sshd, hosts):
    good, _, _ = hosts
    bastion = router.sudo(via=router.ssh("127.0.0.1", port=sshd.port, user="tp-nopw", python=PY,
                                         ssh_options=sshd.ssh_options()), python=PY)
    group = transport.Group(router, good, python=PY, via=bastion, ssh_options=sshd.ssh_options())
    results = group.call(os.getppid)
    assert all(r.ok for r in results.values())
    # The ssh clients run on the bastion: one controller connection, the rest on it.
    ssh_children = subprocess.run(["pgrep", "-P", str(bastion.pid), "ssh"], capture_output=True,
                                  text=True).stdout.split()
    assert len(ssh_children) == len(good)


def test_a_host_whose_context_was_lost_is_connected_again(router, sshd, hosts):
    good, _, _ = hosts
    group = transport.Group(router, good[:2], python=PY, ssh_options=sshd.ssh_options())
    first = group.call(os.getpid)
    lost = group.contexts[good[0]]
    os.kill(lost.pid, 9)
    lost._gone.wait(10)
    assert not lost.alive
    again = group.call(os.getpid)
    assert all(r.ok for r in again.values()), again
    assert again[good[0]].value != first[good[0]].value
    assert again[good[1]].value == first[good[1]].value  # the other one kept its context


def test_any_error_a_task_raises_fails_only_that_host(router, sshd, hosts):
    good, _, _ = hosts

    def task(ctx):
        if ctx.name == good[0]:
            raise RuntimeError("unexpected output on this host")
        return ctx.call(os.getuid)

    results = transport.Group(router, good, python=PY, ssh_options=sshd.ssh_options()).each(task)
    assert isinstance(results[good[0]].error, RuntimeError)
    assert all(results[spec].ok for spec in good[1:])


def test_a_refused_sudo_leaves_no_login_behind(router, sshd):
    group = transport.Group(router, [f"tp-sudo@127.0.0.1:{sshd.port}"], python=PY, sudo=True,
                            sudo_password="wrong", ssh_options=sshd.ssh_options())
    for _ in range(3):
        results = group.call(os.getpid)
        assert isinstance(next(iter(results.values())).error, transport.AuthError)
    deadline = time.monotonic() + 10
    while router.contexts() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert router.contexts() == []


def test_get_names_files_by_host_and_leaves_other_braces_alone(router, sshd, hosts, tmp_path):
    good, _, _ = hosts
    group = transport.Group(router, good[:2], python=PY, ssh_options=sshd.ssh_options())
    fetched = group.get("/etc/hostname", str(tmp_path / "{host}-{date}.txt"))
    assert all(r.ok for r in fetched.values()), fetched
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{spec}-{{date}}.txt" for spec in good[:2])
    # Under sudo=True too {host} is the host as given, not its sudo context's name.
    spec = f"tp-nopw@127.0.0.1:{sshd.port}"
    group = transport.Group(router, [spec], python=PY, sudo=True, ssh_options=sshd.ssh_options())
    fetched = group.get("/etc/shadow", str(tmp_path / "sudo-{host}"))
    assert fetched[spec].ok, fetched
    assert group.host_of(group.contexts[spec]) == spec
    assert (tmp_path / f"sudo-{spec}").exists()


def test_a_lost_sudo_context_is_reopened_with_a_new_login_and_the_old_one_goes(router, sshd):
    spec = f"tp-nopw@127.0.0.1:{sshd.port}"
    group = transport.Group(router, [spec], python=PY, sudo=True,
                            ssh_options=sshd.ssh_options())
    first = group.call(os.getuid)[spec]
    assert first.ok and first.value == 0
    lost = group.contexts[spec]
    os.kill(lost.pid, 9)
    lost._gone.wait(10)
    again = group.call(os.getuid)[spec]
    assert again.ok and again.value == 0
    deadline = time.monotonic() + 10
    while len(router.contexts()) > 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(c.name for c in router.contexts()) == [spec, f"{spec}/sudo:root"]
    assert lost.via not in router.contexts()


def test_sudo_runs_the_interpreter_the_login_found(router, sshd, python3_only_dir):
    # sudo was given python= again: a list failed as a TypeError, and a name was looked up
    # on sudo's secure_path, which does not have the login's search_path.
    python = os.path.join(python3_only_dir, "python3")
    spec = f"tp-nopw@127.0.0.1:{sshd.port}"
    for choice in ("python3", ["/nowhere/python3", "python3"]):
        group = transport.Group(router, [spec], python=choice,
                                search_path=f"{python3_only_dir}:$PATH",
                                sudo=True, ssh_options=sshd.ssh_options())
        result = group.call(os.getuid)[spec]
        assert result.ok and result.value == 0, result
        assert group.contexts[spec].via.python == python
        assert group.contexts[spec].python == python
        group.contexts[spec].via.shutdown()


def test_ctrl_c_while_a_paramiko_connect_waits_ends_the_program_at_once():
    # The connect runs on a Group thread, which the interpreter waits for at exit: closing
    # the router abandons it instead of leaving it to its 120 s timeout.
    import signal
    import socket
    import sys

    with socket.socket() as silent:  # accepts, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        code = (
            "import sys, transport\n"
            "with transport.Router() as router:\n"
            f"    group = transport.Group(router, ['127.0.0.1'], port={silent.getsockname()[1]},\n"
            "                            user='tp-plain', backend='paramiko', connect_timeout=120)\n"
            "    print('connecting', flush=True)\n"
            "    try:\n"
            "        group.call(pow, 2, 2)\n"
            "    except KeyboardInterrupt:\n"
            "        print('interrupted', flush=True)\n")
        program = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert program.stdout.readline() == "connecting\n"
        time.sleep(1)  # in paramiko's wait for the server's banner
        program.send_signal(signal.SIGINT)
        try:
            out, err = program.communicate(timeout=60)
        finally:
            program.kill()
    assert (program.returncode, out) == (0, "interrupted\n"), err
