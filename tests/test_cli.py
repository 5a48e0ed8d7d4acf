"""The command-line tool, run as a subprocess: exit codes, the table, JSON, inventories."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.interpreters import find_interpreters
from tests.support.processes import answer_on_a_terminal
from tests.support.sshd import LOGIN_PASSWORD, PASSWORD_USER, SUDO_PASSWORD

PY = "/usr/bin/python3"


def transport_cli(*args, env=None, timeout=120, input=""):
    return subprocess.run([sys.executable, "-m", "transport", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, input=input)


@pytest.fixture
def ssh_opts(sshd):
    """-o options that point the ssh client at the test server."""
    options = ["-o", f"Port={sshd.port}"]
    for key, value in sshd.ssh_options().items():
        options += ["-o", f"{key}={value}"]
    return options


def test_local_run_prints_the_output_and_passes_the_status():
    ok = transport_cli("run", "--", "echo hello")
    assert ok.returncode == 0 and ok.stdout == "hello\n"
    failed = transport_cli("run", "--", "echo oops >&2; exit 3")
    assert failed.returncode == 3 and "oops" in failed.stderr  # its status, as ssh passes it
    killed = transport_cli("run", "--", "kill -TERM $$")
    assert killed.returncode == 128 + 15  # as a shell reports it


def test_one_target_runs_with_our_stdin_and_output_as_it_comes(tmp_path):
    fed = transport_cli("run", "--", "tr a-z A-Z", input="piped in\n" * 10000)
    assert (fed.returncode, fed.stdout) == (0, "PIPED IN\n" * 10000)
    # The output is written as it comes: the command ends only once our stdout (the file
    # it watches) shows its first word.
    out_path = tmp_path / "out"
    with open(out_path, "w") as out:
        done = subprocess.run([sys.executable, "-m", "transport", "run", "--",
                               f"printf first; until grep -q first {out_path}; do sleep 0.01; "
                               "done; echo ' second'"], stdout=out, timeout=60,
                              stdin=subprocess.DEVNULL)
    assert (done.returncode, out_path.read_text()) == (0, "first second\n")


def test_local_call_with_json_arguments():
    out = transport_cli("call", "os.path:join", "a", '"b"')
    assert out.returncode == 0 and out.stdout.strip() == "a/b"
    out = transport_cli("--json", "call", "builtins:sum", "[1, 2, 3]")
    assert json.loads(out.stdout)["hosts"]["localhost"]["result"] == 6


def test_call_without_a_function_names_only_what_is_missing():
    # argparse called the optional arguments required too: "required: function, args".
    out = transport_cli("call")
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        "transport call: error: the following arguments are required: function")


def test_python_may_be_a_list_of_candidates():
    out = transport_cli("--python", f"/nowhere/python3,{sys.executable}", "call", "sys:getrecursionlimit")
    assert (out.returncode, out.stdout) == (0, f"{sys.getrecursionlimit()}\n"), out.stderr
    out = transport_cli("--python", "/nowhere/python3,/nope", "call", "os:getpid")
    assert out.returncode == 1
    assert out.stderr == ("transport: localhost: no usable Python interpreter at any of "
                          "/nowhere/python3, /nope\n"), out.stderr
    out = transport_cli("--python", "python3,,python", "call", "os:getpid")
    assert out.returncode == 2 and "an empty interpreter in 'python3,,python'" in out.stderr


def test_call_finds_a_module_in_the_current_directory(tmp_path):
    # The installed script (whose sys.path has its own directory, not ours) finds
    # ./deploy_tasks.py as `python -m transport` would, and the target gets it forwarded.
    (tmp_path / "deploy_tasks.py").write_text("def double(n):\n    return 2 * n\n")
    script = os.path.join(os.path.dirname(sys.executable), "transport")
    assert os.access(script, os.X_OK), f"{script} missing: pip install -e . into this venv"
    out = subprocess.run([script, "call", "deploy_tasks:double", "21"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, "42\n", "")
    out = subprocess.run([script, "call", "no_such_tasks:double"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (
        1, "transport: cannot find no_such_tasks:double: No module named 'no_such_tasks'\n")


def test_missing_interpreter_fails_with_a_clear_message():
    out = transport_cli("--python", "/no/python", "ping")
    assert out.returncode == 1
    assert "no usable Python interpreter at '/no/python'" in out.stdout


def test_one_host_prints_the_output_as_the_command_gave_it(ssh_opts):
    out = transport_cli("-H", "tp-plain@127.0.0.1", *ssh_opts, "--python", PY, "run", "--",
                        "echo one; echo two; echo oops >&2; exit 3")
    assert (out.returncode, out.stdout, out.stderr) == (3, "one\ntwo\n", "oops\n")
    out = transport_cli("-H", "tp-plain@127.0.0.1", *ssh_opts, "--python", PY, "call", "os:getcwd")
    assert (out.returncode, out.stdout) == (0, "/home/tp-plain\n")
    # ssh's own failure: its status, and the reason on stderr (stdout is the command's).
    out = transport_cli("-H", "tp-plain@127.0.0.9:1", *ssh_opts, "run", "--", "true")
    assert (out.returncode, out.stdout) == (255, "") and "Connection refused" in out.stderr
    out = transport_cli("-H", "tp-plain@127.0.0.1", *ssh_opts, "--python", PY, "run", "--",
                        "no-such-command", "arg")  # words run without a shell: a shell's 127
    assert (out.returncode, out.stdout) == (127, "")
    assert out.stderr == ("transport: tp-plain@127.0.0.1: [Errno 2] No such file or directory: "
                          "'no-such-command'\n")


@pytest.mark.parametrize("label", ["2.7", "3.6", "3.13"])
def test_a_command_that_cannot_start_exits_as_from_a_shell_on_every_python(label, tmp_path):
    # A 2.7 target raises OSError, not FileNotFoundError: it exited 255 with a traceback.
    python = find_interpreters()[label]
    (tmp_path / "not-runnable").write_text("echo ran\n")
    for argv, status in ((["no-such-command"], 127), ([str(tmp_path / "not-runnable")], 126),
                         ([str(tmp_path)], 126)):
        out = transport_cli("--python", python, "run", "--", *argv, "arg")
        assert (out.returncode, out.stdout) == (status, ""), out.stderr
        assert out.stderr.startswith("transport: localhost: [Errno "), out.stderr


@pytest.mark.parametrize("backend", ["openssh", "paramiko"])
def test_repeated_o_options_mean_what_they_mean_to_ssh(sshd, tmp_path, backend):
    # The last value won, and so only the last key file was tried.
    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    base = ["-o", f"Port={sshd.port}", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "--backend", backend, "--python", PY]
    keys = ["-o", f"IdentityFile={other_key}", "-o", f"IdentityFile={sshd.client_key}"]
    known = ["-o", f"UserKnownHostsFile={sshd.known_hosts}"]
    out = transport_cli("-H", "tp-plain@127.0.0.1", *base, *keys, *known, "ping")
    assert out.returncode == 0, out.stdout + out.stderr
    # A key's first value wins: strict checking, given first, refuses a host not known.
    empty = tmp_path / "known_hosts"
    out = transport_cli("-H", "tp-plain@127.0.0.1", *base, *keys,
                        "-o", f"UserKnownHostsFile={empty}", "-o", "StrictHostKeyChecking=yes",
                        "-o", "stricthostkeychecking=no", "ping")
    assert out.returncode != 0 and "host key is unknown" in out.stdout + out.stderr, out.stdout


def test_a_host_named_twice_is_one_host(ssh_opts, tmp_path):
    # The output was taken for several hosts' and then shown as one's: nothing printed;
    # get asked for {host}.
    out = transport_cli("-H", "tp-plain@127.0.0.1,tp-plain@127.0.0.1", *ssh_opts, "--python",
                        PY, "run", "--", "echo hi; exit 3")
    assert (out.returncode, out.stdout) == (3, "hi\n"), out.stderr
    out = transport_cli("-H", "tp-plain@127.0.0.1,tp-plain@127.0.0.1", *ssh_opts, "--python",
                        PY, "get", "/etc/hostname", str(tmp_path / "hostname"))
    assert out.returncode == 0 and (tmp_path / "hostname").exists(), out.stdout + out.stderr


def test_the_table_shows_an_error_whole(ssh_opts):
    # sudo's own words come last, after what the transport says happened.
    out = transport_cli("-H", "tp-plain@127.0.0.1", *ssh_opts, "--python", PY, "--sudo", "ping")
    assert out.returncode == 1
    (row,) = out.stdout.splitlines()[1:]
    assert row.split()[1] == "error" and row.endswith(
        "sudo: a password is required (no password was given) (-K asks for sudo's password; "
        "or set TRANSPORT_SUDO_PASSWORD)"), row
    # Where the cause is on the error's next line, the row has it too (it ended at the
    # colon before it); the HOST column names the host, the row what ran on it.
    hosts = "tp-plain@127.0.0.1,tp-plain@127.0.0.2"
    out = transport_cli("-H", hosts, *ssh_opts, "--python", PY, "-U", "no-such-user", "ping")
    rows = out.stdout.splitlines()[1:]
    assert len(rows) == 2 and all(
        row.split()[1] == "error" and " sudo:no-such-user: the connection closed " in row
        and row.endswith(": sudo: unknown user no-such-user") for row in rows), out.stdout


def test_several_hosts_table_and_exit_status(ssh_opts):
    hosts = "tp-plain@127.0.0.1,tp-plain@127.0.0.2,tp-plain@127.0.0.9:1"
    out = transport_cli("-H", hosts, *ssh_opts, "--python", PY, "run", "--", "id -un")
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["HOST", "STATUS", "EXIT", "TIME", "OUTPUT"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["tp-plain@127.0.0.1"].split()[1:3] == ["ok", "0"]
    assert rows["tp-plain@127.0.0.1"].endswith("tp-plain")
    assert rows["tp-plain@127.0.0.9:1"].split()[1] == "error"
    assert "Connection refused" in rows["tp-plain@127.0.0.9:1"]
    assert out.stderr == ""  # no progress bar when stderr is not a terminal


def test_the_table_shows_any_value_and_no_control_characters(ssh_opts):
    # A dict with a "version" was taken for ping's answer (KeyError: no host was shown);
    # a host's escape sequence could move the cursor over the other rows.
    hosts = "tp-plain@127.0.0.1,tp-plain@127.0.0.2"
    out = transport_cli("-H", hosts, *ssh_opts, "--python", PY, "call", "builtins:dict",
                        '[["version", "1.2"]]')
    assert out.returncode == 0, out.stderr
    assert [line.split()[-1] for line in out.stdout.splitlines()[1:]] == ['"1.2"}'] * 2
    out = transport_cli("-H", hosts, *ssh_opts, "--python", PY, "run", "--",
                        r"printf 'up\033[2Aover'")
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout
    assert [line.split()[-1] for line in out.stdout.splitlines()[1:]] == ["up?[2Aover"] * 2


def test_the_table_shows_an_errors_hint(ssh_opts, tmp_path):
    # What the controller knows of a failure (here: the module is a C extension here,
    # never sent) is what the user acts on: the row shows it after the error.
    from importlib.machinery import EXTENSION_SUFFIXES

    (tmp_path / "native_tasks").mkdir()
    (tmp_path / "native_tasks" / "__init__.py").write_text(
        "def load():\n    from native_tasks import _native\n")
    (tmp_path / "native_tasks" / f"_native{EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    hosts = "tp-plain@127.0.0.1,tp-plain@127.0.0.2"
    out = subprocess.run([sys.executable, "-m", "transport", "-H", hosts, *ssh_opts, "--python",
                          PY, "call", "native_tasks:load"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    rows = out.stdout.splitlines()[1:]
    assert len(rows) == 2 and all(row.split()[1] == "error" for row in rows)
    assert all(row.endswith("(native_tasks._native is a C extension on the controller, which "
                            "is never sent to targets: install native_tasks on the target)")
               for row in rows), out.stdout


def test_several_hosts_json_and_inventory(ssh_opts, tmp_path):
    inventory = tmp_path / "hosts"
    inventory.write_text("# web servers\n127.0.0.1\n127.0.0.3   # the third\n\n")
    out = transport_cli("-i", str(inventory), "-u", "tp-plain", *ssh_opts, "--python", PY,
                        "--json", "run", "--", "echo", "$HOME")
    assert out.returncode == 0, out.stdout + out.stderr
    document = json.loads(out.stdout)
    assert document["ok"] is True
    assert set(document["hosts"]) == {"127.0.0.1", "127.0.0.3"}
    assert document["hosts"]["127.0.0.1"]["stdout"] == "$HOME\n"  # a list runs without a shell
    assert document["hosts"]["127.0.0.3"]["exit_code"] == 0


def test_put_and_get_across_hosts(ssh_opts, tmp_path):
    source = tmp_path / "note.txt"
    source.write_text("shipped\n")
    hosts = "tp-plain@127.0.0.1,tp-plain@127.0.0.2"
    out = transport_cli("-H", hosts, *ssh_opts, "--python", PY, "put", str(source),
                        "/home/tp-plain/note.txt")
    assert out.returncode == 0, out.stdout
    out = transport_cli("-H", hosts, *ssh_opts, "--python", PY, "get", "/home/tp-plain/note.txt",
                        str(tmp_path / "from-{host}.txt"))
    assert out.returncode == 0, out.stdout
    assert (tmp_path / "from-tp-plain@127.0.0.2.txt").read_text() == "shipped\n"
    refused = transport_cli("-H", hosts, "get", "/home/tp-plain/note.txt", str(tmp_path / "x"))
    assert refused.returncode != 0 and "{host}" in refused.stderr


def test_verbose_forwards_remote_log_records():
    out = transport_cli("-v", "call", "tests.remote_functions:log_message", "30", "from the target")
    assert out.returncode == 0, out.stderr
    assert "transport.remote.tp.app: localhost: from the target" in out.stderr
    assert re.search(r"^transport: localhost: connected, pid \d+, Python ", out.stderr, re.M), \
        out.stderr
    assert "transport: localhost: disconnected: " in out.stderr


def _remote_sleeps(marker):
    return subprocess.run(["pgrep", "-u", "tp-plain", "-f", f"^sleep {marker}$"], capture_output=True,
                          text=True).stdout.split()


@pytest.mark.parametrize("hosts", ["tp-plain@127.0.0.1", "tp-plain@127.0.0.1,tp-plain@127.0.0.2"])
def test_ctrl_c_interrupts_the_remote_commands_and_ends_at_once(ssh_opts, hosts):
    marker = f"31.{os.getpid()}{len(hosts)}"  # this run's own
    cli = subprocess.Popen([sys.executable, "-m", "transport", "-H", hosts, *ssh_opts,
                            "--python", PY, "run", "--", f"sleep {marker}; echo never"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(_remote_sleeps(marker)) < hosts.count(",") + 1:
            assert time.monotonic() < deadline and cli.poll() is None, cli.communicate()
            time.sleep(0.05)
        cli.send_signal(signal.SIGINT)  # as Ctrl-C at a terminal
        out, err = cli.communicate(timeout=15)
    finally:
        cli.kill()
    assert cli.returncode == 130, err
    assert "never" not in out and "Traceback" not in err
    deadline = time.monotonic() + 10
    while _remote_sleeps(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _remote_sleeps(marker) == []


def test_a_reader_that_goes_away_ends_the_run_quietly(ssh_opts):
    for where in ([], ["-H", "tp-plain@127.0.0.1", *ssh_opts, "--python", PY]):
        cli = subprocess.Popen([sys.executable, "-m", "transport", *where, "run", "--",
                                "seq 1 10000000"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert cli.stdout.readline() == b"1\n"
        cli.stdout.close()  # as `| head -1` does
        err = cli.stderr.read()
        assert (cli.wait(timeout=60), err) == (141, b"")  # 128 + SIGPIPE, as ssh gives


def test_get_with_sudo_names_each_hosts_file(ssh_opts, tmp_path):
    hosts = "tp-nopw@127.0.0.1,tp-nopw@127.0.0.2"
    out = transport_cli("-H", hosts, *ssh_opts, "--python", PY, "--sudo", "get", "/etc/shadow",
                        str(tmp_path / "{host}-{date}.txt"))
    assert out.returncode == 0, out.stdout
    # {host} is the host as the HOST column shows it, not the sudo context's name.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tp-nopw@127.0.0.1-{date}.txt", "tp-nopw@127.0.0.2-{date}.txt"]


def test_bad_hosts_and_inventories_are_named_before_anything_starts(tmp_path):
    inventory = tmp_path / "hosts"
    inventory.write_text("web1\n# a comment\nweb2:abc\n")
    out = transport_cli("-i", str(inventory), "ping")
    assert out.returncode == 1
    assert out.stderr == (f"transport: {inventory} line 3: 'web2:abc': the port must be a "
                          "number from 1 to 65535\n")
    out = transport_cli("-i", str(tmp_path / "missing"), "ping")
    assert out.stderr == (f"transport: cannot read the inventory {tmp_path / 'missing'}: "
                          "No such file or directory\n")
    out = transport_cli("-H", "web1,@web2", "ping")
    assert out.stderr == "transport: -H: '@web2': the user before @ is empty\n"
    for option, value, why in (("--timeout", "-1", "must be above zero, not -1"),
                               ("--timeout", "soon", "not a number: 'soon'"),
                               ("-j", "0", "must be above zero, not 0")):
        out = transport_cli(option, value, "-H", "web1", "ping")
        assert out.returncode == 2 and out.stderr.endswith(f"{why}\n"), out.stderr


def test_a_second_ctrl_c_leaves_at_once(ssh_opts):
    # A Python call (not a command) ends only when it returns: after the first Ctrl-C
    # the router waits for it (5 s, then it hangs up); a second Ctrl-C leaves at once.
    marker = f"32.{os.getpid()}"  # this run's own
    cli = subprocess.Popen([sys.executable, "-m", "transport", "-H", "tp-plain@127.0.0.1",
                            *ssh_opts, "--python", PY, "call", "subprocess:call",
                            json.dumps(["sleep", marker])],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not _remote_sleeps(marker):
            assert time.monotonic() < deadline and cli.poll() is None, cli.communicate()
            time.sleep(0.05)
        cli.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert cli.poll() is None, cli.communicate()  # closing: the call goes on
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=15)  # not after the call (32 s), nor a hang
    finally:
        cli.kill()
        subprocess.run(["pkill", "-u", "tp-plain", "-f", f"^sleep {marker}$"])
    assert (cli.returncode, err) == (130, "")


def test_a_second_ctrl_c_while_the_first_is_passed_on_leaves_at_once(ssh_opts):
    # The second KeyboardInterrupt came while the first was being passed on to the hosts'
    # commands (_interrupt, slowed here as by a few hundred hosts), left through the
    # router's close (5 s, then a hang-up) and only then reached the exit.
    marker = f"34.{os.getpid()}"
    program = ("import sys, time\n"
               "from transport import cli\n"
               "passing_on = cli._interrupt\n"
               "cli._interrupt = lambda router: (time.sleep(1), passing_on(router))\n"
               "sys.exit(cli.main(sys.argv[1:]))\n")
    cli = subprocess.Popen([sys.executable, "-c", program, "-H",
                            "tp-plain@127.0.0.1,tp-plain@127.0.0.2", *ssh_opts,
                            "--python", PY, "run", "--", f"sleep {marker}"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(_remote_sleeps(marker)) < 2:
            assert time.monotonic() < deadline and cli.poll() is None, cli.communicate()
            time.sleep(0.05)
        cli.send_signal(signal.SIGINT)
        time.sleep(0.3)  # within the first one's passing on
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=4)  # not after the close's 5 s
    finally:
        cli.kill()
        subprocess.run(["pkill", "-u", "tp-plain", "-f", f"^sleep {marker}$"])
    assert cli.returncode == 130, err


def test_sudo_password_from_the_environment(ssh_opts):
    # --sudo had no way to give a password: only hosts with NOPASSWD rules could be used.
    host = "tp-sudo@127.0.0.1"
    out = transport_cli("-H", host, *ssh_opts, "--python", PY, "--sudo", "call", "os:getuid",
                        env={"TRANSPORT_SUDO_PASSWORD": SUDO_PASSWORD})
    assert (out.returncode, out.stdout) == (0, "0\n"), out.stderr
    wrong = "not-" + SUDO_PASSWORD
    out = transport_cli("-H", host, *ssh_opts, "--python", PY, "--sudo", "call", "os:getuid",
                        env={"TRANSPORT_SUDO_PASSWORD": wrong})
    assert out.returncode != 0 and "sudo to root refused" in out.stderr, out.stderr
    assert wrong not in out.stdout + out.stderr
    # Local targets inherit the environment: the password is not in it.
    out = transport_cli("run", "--", "env", env={"TRANSPORT_SUDO_PASSWORD": SUDO_PASSWORD})
    assert out.returncode == 0 and "HOME=" in out.stdout and SUDO_PASSWORD not in out.stdout


def test_sudo_user_becomes_that_user_here_and_on_hosts(ssh_opts):
    import pwd

    # --sudo became root only: a service's own user (postgres, say) was out of reach.
    out = transport_cli("-H", "tp-nopw@127.0.0.1", *ssh_opts, "--python", PY, "-U", "tp-app",
                        "call", "os:getuid")
    assert (out.returncode, out.stdout) == (0, f"{pwd.getpwnam('tp-app').pw_uid}\n"), out.stderr
    out = transport_cli("--python", PY, "-U", "nobody", "run", "--", "id", "-un")
    assert (out.returncode, out.stdout) == (0, "nobody\n"), out.stderr
    out = transport_cli("-U", "two words", "ping")
    assert out.returncode == 2 and "'two words' is not a user name" in out.stderr, out.stderr


def test_ssh_password_from_the_environment(ssh_opts):
    import pwd

    host = f"{PASSWORD_USER}@127.0.0.1"  # a user with no key: its password only
    out = transport_cli("-H", host, *ssh_opts, "--python", PY, "call", "os:getuid",
                        env={"TRANSPORT_SSH_PASSWORD": LOGIN_PASSWORD})
    assert (out.returncode, out.stdout) == (0, f"{pwd.getpwnam(PASSWORD_USER).pw_uid}\n"), out.stderr
    out = transport_cli("-H", host, *ssh_opts, "--python", PY, "call", "os:getuid",
                        env={"TRANSPORT_SSH_PASSWORD": "not-it"})
    assert out.returncode == 1 and "the password was refused" in out.stderr, out.stderr
    assert "not-it" not in out.stdout + out.stderr


@pytest.mark.parametrize("option", ["-K", "-k"])
def test_ask_password_asks_on_the_terminal_without_echo(ssh_opts, option):
    import pwd

    user, prompt, password, expected = {
        "-K": ("tp-sudo", b"sudo password: ", SUDO_PASSWORD, 0),
        "-k": (PASSWORD_USER, b"ssh password: ", LOGIN_PASSWORD, pwd.getpwnam(PASSWORD_USER).pw_uid),
    }[option]
    status, out, err, shown = answer_on_a_terminal(
        [sys.executable, "-m", "transport", "-H", f"{user}@127.0.0.1", *ssh_opts, "--python", PY,
         option, "call", "os:getuid"], prompt, password)
    assert (status, out) == (0, b"%d\n" % expected), err
    assert password.strip().encode() not in shown + out + err


def test_ask_sudo_password_without_a_terminal_says_what_to_do_instead():
    out = subprocess.run([sys.executable, "-m", "transport", "-K", "ping"], capture_output=True,
                         text=True, timeout=60, start_new_session=True, stdin=subprocess.DEVNULL)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == ("transport: -K asks for sudo's password on the terminal, and there is "
                          "none: set TRANSPORT_SUDO_PASSWORD instead\n")
    out = subprocess.run([sys.executable, "-m", "transport", "-k", "-H", "web1", "ping"],
                         capture_output=True, text=True, timeout=60, start_new_session=True,
                         stdin=subprocess.DEVNULL)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == ("transport: -k asks for the hosts' login password on the terminal, and "
                          "there is none: set TRANSPORT_SSH_PASSWORD instead\n")

