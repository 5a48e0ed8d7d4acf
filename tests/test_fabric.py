"""The Fabric and invoke adapters, driven as users drive them: the real `fab` and `inv`
commands as subprocesses against the test sshd, stock Fabric side by side."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import transport
from tests.support.processes import alive, answer_on_a_terminal, run_python_program, written_text
from tests.support.sshd import APP_PASSWORD, LOGIN_PASSWORD, PASSWORD_USER, SUDO_PASSWORD, free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PROJECTS = Path(__file__).resolve().parent / "projects"
BIN = Path(sys.executable).parent
FAB = BIN / "fab"
INV = BIN / "inv"


@pytest.fixture(scope="module")
def runtime_config(sshd, tmp_path_factory):
    """The per-run settings a user would keep in ~/.fabric.yaml: the key, the known hosts."""
    if not FAB.exists():
        pytest.fail(f"{FAB} not found: pip install -e '.[dev]' (the dev extra includes fabric)")
    path = tmp_path_factory.mktemp("fabric-config") / "runtime.yaml"
    path.write_text(f"""connect_kwargs:
  key_filename: [{sshd.client_key}]
sudo:
  password: {SUDO_PASSWORD}
transport:
  ssh_options:
    UserKnownHostsFile: {sshd.known_hosts}
    StrictHostKeyChecking: "yes"
""")
    return path


def fab(project: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    # stdin stays open and silent, as a terminal nobody types into: stock Fabric's sudo
    # answers its prompt through the command's stdin, which it closes at our end of file.
    quiet, keep_open = os.pipe()
    try:
        return run_python_program([str(FAB), "-f", str(config), *args], 120, cwd=project,
                                  stdin=quiet)
    finally:
        os.close(quiet)
        os.close(keep_open)


def host(sshd, user: str, index: int = 0) -> str:
    return f"{user}@{sshd.addresses[index]}:{sshd.port}"


def project(tmp_path: Path, name: str, fabfile: Path, fast: bool) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    shutil.copy(fabfile, directory / "fabfile.py")
    if fast:
        shutil.copy(EXAMPLES / "fabric.yaml", directory / "fabric.yaml")
    return directory


def test_example_deploy_on_two_hosts(sshd, runtime_config, tmp_path):
    example = tmp_path / "example"
    shutil.copytree(EXAMPLES, example)
    root = f"deploy-test-{uuid.uuid4().hex[:8]}"
    hosts = f"{host(sshd, 'tp-plain', 0)},{host(sshd, 'tp-app', 1)}"
    homes = [Path("/home/tp-plain") / root, Path("/home/tp-app") / root]
    try:
        for _ in range(2):  # a second deploy replaces the first, service restarted
            result = fab(example, runtime_config, "-H", hosts, "deploy", "--root", root)
            assert result.returncode == 0, result.stderr
            assert result.stdout.count(" is live") == 2, result.stdout
        for home in homes:
            current = (home / "current").resolve()
            assert current.parent == home / "releases"
            assert (current / "VERSION").read_text().strip() == current.name
            assert len(list((home / "releases").iterdir())) == 2
            pid = int((home / "shared" / "service.pid").read_text())
            assert alive(pid)  # the service outlived the fab run
        status = fab(example, runtime_config, "-H", hosts, "status", "--root", root)
        assert status.returncode == 0 and status.stdout.count("running ") == 2, status.stderr
    finally:
        stop = fab(example, runtime_config, "-H", hosts, "stop", "--root", root)
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.count("stopped") == 2


def test_example_service_serves_the_new_version_as_soon_as_restart_returns(tmp_path):
    # The deploy checks health right after the restart: the old service's last beat must
    # be gone by then (this raced, and made the deploy test above fail now and then).
    for name in ("one", "two"):
        release = tmp_path / "releases" / name
        shutil.copytree(EXAMPLES / "app", release)
        (release / "VERSION").write_text(name + "\n")
    (tmp_path / "shared").mkdir()
    heartbeat, pid_file = tmp_path / "shared" / "heartbeat", tmp_path / "shared" / "service.pid"
    old_pid = None
    try:
        for _ in range(5):
            for name in ("one", "two"):
                current = tmp_path / "current"
                current.unlink(missing_ok=True)
                current.symlink_to(tmp_path / "releases" / name)
                subprocess.run([str(current / "bin" / "service"), "restart"], check=True,
                               capture_output=True, timeout=30)
                assert heartbeat.read_text().strip() == name
                assert old_pid is None or not alive(old_pid)  # the old loop cannot beat again
                old_pid = int(pid_file.read_text())
        time.sleep(1.5)  # a beat later, still the version last started
        assert heartbeat.read_text().strip() == "two"
    finally:
        subprocess.run([str(tmp_path / "current" / "bin" / "service"), "stop"],
                       capture_output=True, timeout=30)
    assert not (tmp_path / "shared" / "heartbeat").exists()


def features_run_on_stock_and_fast(config: Path, tmp_path: Path,
                                   *args: str) -> list[subprocess.CompletedProcess]:
    """fab with args, for fabfile_features.py, on stock Fabric and on the transport."""
    results = []
    for fast in (False, True):
        directory = project(tmp_path, f"fast-{fast}", PROJECTS / "fabfile_features.py", fast)
        results.append(fab(directory, config, *args))
    return results


def features_on_stock_and_fast(config: Path, tmp_path: Path, target: str,
                               task: str) -> dict[bool, str]:
    """What a task of fabfile_features.py prints on stock Fabric (False) and on the
    transport (True)."""
    outputs = {}
    for fast, result in zip((False, True), features_run_on_stock_and_fast(
            config, tmp_path, "-H", target, task)):
        assert result.returncode == 0, result.stderr
        outputs[fast] = result.stdout
    return outputs


def test_connection_api_matches_stock_fabric(sshd, runtime_config, tmp_path):
    outputs = {fast: text.splitlines() for fast, text in features_on_stock_and_fast(
        runtime_config, tmp_path, host(sshd, "tp-sudo"), "features").items()}
    stock, fast = outputs[False], outputs[True]
    assert stock[0] == "connection class: 'fabric.connection'"
    assert fast[0] == "connection class: 'adapters.fabric.connection'"
    assert fast[-1] == "call: True"
    assert stock[1:] == fast[1:-1]  # everything else printed the same, line for line
    assert "sudo: 'root\\n/root\\n'" in fast and "sudo as user: 'tp-app\\n'" in fast
    assert "pty: 'on a tty\\r\\n'" in fast and "get a missing file: ('FileNotFoundError', 2)" in fast
    assert "put over a file keeps its inode (a container's bind mount stays its file): True" in fast
    assert "put over a read-only file: ('PermissionError', 13)" in fast
    assert "a command its signal ended: -1" in fast
    assert "sftp open and read: ('line 1\\n', b'line 2\\nline 3\\n')" in fast
    assert "sftp stat of a removed directory: ('FileNotFoundError', 2)" in fast
    assert fast.count("sftp refuses to replace a file: True") == 2
    assert "sftp truncate and posix_rename: 3" in fast
    assert "sftp flush: '0123456789'" in fast and "sftp flush appends: 'appended\\ntwice\\n'" in fast
    assert "sftp put and get with callbacks: (19, True, True)" in fast
    assert "sftp listdir_iter: ['a.txt', 'c.txt', 'e.txt', 'f.txt', 'g.txt']" in fast


def test_fabs_own_stdin_reaches_the_command_as_on_stock_fabric(sshd, runtime_config, tmp_path):
    lines = "".join(f"line {n} é\n" for n in range(30))  # stock reads a byte per 10 ms
    outputs = []
    for fast in (False, True):
        directory = project(tmp_path, f"fast-{fast}", PROJECTS / "fabfile_features.py", fast)
        result = subprocess.run([str(FAB), "-f", str(runtime_config), "-H",
                                 host(sshd, "tp-plain"), "piped"], cwd=directory,
                                capture_output=True, text=True, input=lines, timeout=300)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1] == lines + "end\n"


def test_an_interactive_shell_as_on_stock_fabric(sshd, runtime_config, tmp_path):
    outputs = []
    for fast in (False, True):
        directory = project(tmp_path, f"fast-{fast}", PROJECTS / "fabfile_features.py", fast)
        result = fab(directory, runtime_config, "-H", host(sshd, "tp-plain"), "shell")
        assert result.returncode == 0, result.stderr
        assert "42\n" in result.stdout  # the session is shown, as it goes
        outputs.append([result.stdout.splitlines()[0], result.stdout.rsplit("shell: ", 1)[1]])
    # The same refusal of run()'s other options; the session's exit status, no command,
    # no stderr, and the command typed ran (the session's text differs: stock's sshd
    # prints its login banner, and stock types a byte per 10 ms, which the echo shows).
    assert outputs[0] == outputs[1]
    assert outputs[1][1] == "(3, None, '', True)\n"


def test_a_failing_command_exits_as_stock_fabric_does(sshd, runtime_config, tmp_path):
    stock, fast = features_run_on_stock_and_fast(runtime_config, tmp_path, "-H",
                                                 host(sshd, "tp-plain"), "fail")
    assert fast.returncode == stock.returncode == 7  # fab exits with the command's status
    assert fast.stdout == stock.stdout == "about to fail\n"
    assert fast.stderr == stock.stderr == "bad thing\n"


def test_sudo_allows_and_refuses_what_it_would_for_stock_fabric(sshd, runtime_config, tmp_path):
    # sudoers lets tp-limited run `id` only, on a terminal only: no interpreter as root,
    # so each command goes to sudo, which asks this user's password for others.
    config = tmp_path / "limited.yaml"
    config.write_text(runtime_config.read_text().replace(SUDO_PASSWORD, APP_PASSWORD))
    outputs = features_on_stock_and_fast(config, tmp_path, host(sshd, "tp-limited"),
                                         "limited-sudo")
    assert outputs[False] == outputs[True]
    assert outputs[True].splitlines() == [
        "allowed: 'root\\r\\n'",
        "allowed, no terminal: (1, '', 'sudo: sorry, you must have a tty to run sudo')",
        "not allowed: (1, True)",
        "allowed again: '0\\r\\n'"]


def test_sudo_answers_as_for_stock_fabric(sshd, runtime_config, tmp_path):
    outputs = features_on_stock_and_fast(runtime_config, tmp_path, host(sshd, "tp-sudo"),
                                         "sudo-edges")
    assert outputs[False] == outputs[True]
    assert outputs[True].splitlines() == [
        "unknown user: (1, True)", "right password: 'root\\n'", "wrong password: 'refused'",
        "right password again: 'root\\n'"]


def test_a_dry_run_shows_sudo_commands_and_runs_nothing(sshd, runtime_config, tmp_path):
    stock, fast = features_run_on_stock_and_fast(runtime_config, tmp_path, "--dry", "-H",
                                                 host(sshd, "tp-plain"), "dry-sudo")
    assert fast.returncode == stock.returncode == 0, fast.stderr
    assert fast.stdout == stock.stdout and "id -un" in stock.stdout
    assert fast.stderr == stock.stderr == ""  # tp-plain may not sudo: nothing was tried


def test_an_echoed_sudo_command_shows_the_sudo_command_line_as_on_stock(sshd, runtime_config,
                                                                      tmp_path):
    # The echo showed the bare command, with no sign that it ran as another user.
    stock, fast = features_run_on_stock_and_fast(runtime_config, tmp_path, "-H",
                                                 host(sshd, "tp-sudo"), "echoed-sudo")
    assert fast.returncode == stock.returncode == 0, fast.stderr
    assert fast.stdout == stock.stdout
    assert "sudo -S -p '[sudo] password: ' --preserve-env='X' -H -u tp-app true && id -un" in fast.stdout


def test_a_connection_lost_mid_command_fails_it_as_on_stock_fabric(sshd, runtime_config,
                                                                   tmp_path):
    stock, fast = features_run_on_stock_and_fast(runtime_config, tmp_path, "-H",
                                                 host(sshd, "tp-plain"), "lost")
    assert fast.stdout == stock.stdout
    assert stock.stdout.splitlines() == ["lost: (-1, False)", "again: 'again\\n'"]
    assert fast.returncode == stock.returncode == 255  # UnexpectedExit, exit status -1
    assert stock.stderr == ""
    # The reasons, which stock does not give: one line each.
    assert [line.split(": ", 1)[1] for line in fast.stderr.splitlines()] == [
        "disconnected: the ssh session exited with status 137: Killed"] * 2, fast.stderr


def test_sudo_without_the_password_fails_clearly(sshd, tmp_path):
    config = tmp_path / "nopassword.yaml"
    config.write_text(f"connect_kwargs:\n  key_filename: {sshd.client_key}\n"
                      f"transport:\n  ssh_options:\n    UserKnownHostsFile: {sshd.known_hosts}\n")
    directory = project(tmp_path, "fast", PROJECTS / "fabfile_features.py", True)
    (directory / "fabfile.py").write_text(
        "from fabric import task\n\n@task\ndef root(c):\n    c.sudo('id -un')\n")
    result = fab(directory, config, "-H", host(sshd, "tp-sudo"), "root")
    assert result.returncode != 0
    assert "sudo on 127.0.0.1: a password is needed and none was given" in result.stderr
    # sudo -n said so; no password ("None", as stock types) was tried, no login failed.
    assert "sudo: a password is required" in result.stderr
    assert "[sudo] password" not in result.stderr and "Sorry, try again" not in result.stderr
    assert "sudo.password" in result.stderr and SUDO_PASSWORD not in result.stderr


@pytest.mark.parametrize("fast", [False, True], ids=["stock", "fast"])
def test_a_login_password_in_connect_kwargs_logs_in_as_on_stock_fabric(sshd, tmp_path, fast):
    # connect_kwargs.password (what fab --prompt-for-login-password sets) was refused by
    # name: hosts that take a password and no key could not be reached.
    directory = project(tmp_path, "project", PROJECTS / "fabfile_features.py", fast)
    (directory / "fabfile.py").write_text(
        "from fabric import task\n\n@task\ndef who(c):\n    c.run('id -un')\n")
    results = []
    for password in (LOGIN_PASSWORD, "not-it"):
        config = tmp_path / f"login-{len(results)}.json"
        config.write_text(json.dumps({
            "connect_kwargs": {"password": password, "look_for_keys": False,
                               "allow_agent": False},
            "transport": {"ssh_options": {"UserKnownHostsFile": str(sshd.known_hosts)}}}))
        results.append(fab(directory, config, "-H", host(sshd, PASSWORD_USER), "who"))
    right, wrong = results
    assert (right.returncode, right.stdout) == (0, f"{PASSWORD_USER}\n"), right.stderr
    assert wrong.returncode != 0 and "Authentication failed" in wrong.stderr, wrong.stderr
    if fast:  # Fabric connects with paramiko: so does the adapter, by default
        assert f"AuthError: {PASSWORD_USER}@127.0.0.1:{sshd.port}: authentication refused" in (
            wrong.stderr)
    assert "not-it" not in wrong.stdout + wrong.stderr


def test_fab_prompt_for_login_password_on_the_terminal(sshd, tmp_path):
    directory = project(tmp_path, "fast", PROJECTS / "fabfile_features.py", True)
    (directory / "fabfile.py").write_text(
        "from fabric import task\n\n@task\ndef who(c):\n    c.run('id -un')\n")
    config = tmp_path / "known.json"
    config.write_text(json.dumps({"connect_kwargs": {"look_for_keys": False, "allow_agent": False},
                                  "transport": {"ssh_options": {
                                      "UserKnownHostsFile": str(sshd.known_hosts)}}}))
    status, out, err, _ = answer_on_a_terminal(
        [str(FAB), "-f", str(config), "--prompt-for-login-password",
         "-H", host(sshd, PASSWORD_USER), "who"], b"assword", LOGIN_PASSWORD, cwd=directory)
    assert (status, out) == (0, f"{PASSWORD_USER}\n".encode()), err


@pytest.mark.parametrize("fast", [False, True], ids=["stock", "fast"])
def test_a_key_passphrase_in_connect_kwargs_opens_the_key_as_on_stock_fabric(sshd, tmp_path,
                                                                             fast):
    # connect_kwargs.passphrase (what fab --prompt-for-passphrase sets) was refused by name.
    key = tmp_path / "encrypted_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "key phrase", "-f", str(key)],
                   check=True)
    revoke = sshd.authorize(PASSWORD_USER, (tmp_path / "encrypted_key.pub").read_text())
    try:
        directory = project(tmp_path, "project", PROJECTS / "fabfile_features.py", fast)
        (directory / "fabfile.py").write_text(
            "from fabric import task\n\n@task\ndef who(c):\n    c.run('id -un')\n")
        config = tmp_path / "passphrase.json"
        config.write_text(json.dumps({
            "connect_kwargs": {"key_filename": [str(key)], "passphrase": "key phrase",
                               "allow_agent": False},
            "transport": {"ssh_options": {"UserKnownHostsFile": str(sshd.known_hosts)}}}))
        result = fab(directory, config, "-H", host(sshd, PASSWORD_USER), "who")
    finally:
        revoke()
    assert (result.returncode, result.stdout) == (0, f"{PASSWORD_USER}\n"), result.stderr


def test_unreachable_host_names_the_host(sshd, runtime_config, tmp_path):
    directory = project(tmp_path, "fast", PROJECTS / "fabfile_features.py", True)
    result = fab(directory, runtime_config, "-H", f"tp-plain@127.0.0.1:{_closed_port()}", "whoami")
    assert result.returncode != 0
    assert "127.0.0.1" in result.stderr and "refused" in result.stderr.lower()


def test_a_function_defined_in_the_fabfile_fails_with_a_hint_to_move_it(sshd, runtime_config,
                                                                      tmp_path):
    # c.call(f) makes the target import f's module: a fabfile's `from fabric import task`
    # needs Fabric (and paramiko's metadata, and cryptography) there. The error says why.
    fabfile = tmp_path / "fabfile.py"
    fabfile.write_text(textwrap.dedent("""
        import os
        from fabric import task

        def where():
            return os.getcwd()

        @task
        def here(c):
            print(c.call(where))
    """))
    directory = project(tmp_path, "fast", fabfile, True)
    result = fab(directory, runtime_config, "-H", host(sshd, "tp-plain"), "here")
    assert result.returncode == 1
    assert (f"(the target ran the module-level code of fabfile ({directory / 'fabfile.py'}), "
            "as it imported it to find a function of it: keep imports that only the controller "
            "has out of it (a fabfile's `from fabric import task`), or define the function in "
            "a module of its own)\n") in result.stderr, result.stderr


def test_a_fabfile_without_the_key_uses_stock_fabric(sshd, runtime_config, tmp_path):
    directory = project(tmp_path, "stock", PROJECTS / "fabfile_features.py", False)
    result = fab(directory, runtime_config, "-H", host(sshd, "tp-plain"), "whoami")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "connection class: 'fabric.connection'\ntp-plain\n"


GROUP_SCRIPT = """
import sys
from fabric import Config
from fabric.exceptions import GroupException
from {module} import SerialGroup, ThreadingGroup

config = Config(overrides={{"connect_kwargs": {{"key_filename": [{key!r}]}},
                           "transport": {{"ssh_options": {{"UserKnownHostsFile": {known!r}}}}}}})
for kind in (SerialGroup, ThreadingGroup):
    with kind(*sys.argv[1:], user="tp-plain", config=config) as group:
        print(kind.__name__, type(group[0]).__module__)
        results = group.run("id -un; echo $SSH_CONNECTION | cut -d' ' -f3", hide=True)
        print(sorted((c.host, r.stdout) for c, r in results.items()))
        try:
            group.run("echo out; exit 3", hide=True)
        except GroupException as e:
            print(sorted((c.host, type(r).__name__, r.result.exited, r.result.stdout)
                         for c, r in e.result.items()))
"""


def test_a_script_using_fabrics_groups_runs_them_on_the_transport_as_on_stock(sshd, tmp_path):
    # Scripts that use Fabric as a library had no group of transport Connections.
    outputs = {}
    for module in ("fabric", "adapters.fabric"):
        script = tmp_path / f"group_{module.replace('.', '_')}.py"  # not fabric.py
        script.write_text(GROUP_SCRIPT.format(module=module, key=str(sshd.client_key),
                                              known=str(sshd.known_hosts)))
        result = run_python_program([sys.executable, str(script),
                                     *(f"{a}:{sshd.port}" for a in sshd.addresses[:2])], 120)
        assert result.returncode == 0, result.stderr
        outputs[module] = result.stdout
    assert outputs["adapters.fabric"] == outputs["fabric"].replace(
        "fabric.connection", "adapters.fabric.connection")
    assert outputs["fabric"].count("fabric.connection") == 2
    assert "('127.0.0.2', 'tp-plain\\n127.0.0.2\\n')" in outputs["fabric"], outputs["fabric"]


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _invoke_project(sshd, tmp_path: Path, user: str = "tp-plain", **settings: str) -> Path:
    """A tasks.py whose `transport` section reaches user at the test sshd (and has settings)."""
    directory = tmp_path / f"invoke-project-{user}"
    directory.mkdir()
    target = {"host": host(sshd, user), "python": "/usr/bin/python3",
              "ssh_options": {"IdentityFile": str(sshd.client_key), "IdentitiesOnly": "yes",
                              "UserKnownHostsFile": str(sshd.known_hosts)}, **settings}
    text = (PROJECTS / "tasks_remote.py").read_text().replace("TARGET = {}", f"TARGET = {target!r}")
    (directory / "tasks.py").write_text(text)
    return directory


def _check_invoke_output(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tp-plain\n/tmp\nexited 5\n"


def test_invoke_tasks_run_on_a_target(sshd, tmp_path):
    directory = _invoke_project(sshd, tmp_path)
    result = subprocess.run([str(INV), "who"], cwd=directory, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    _check_invoke_output(result)


def test_invoke_tasks_reach_a_host_with_its_login_password(sshd, tmp_path):
    directory = _invoke_project(sshd, tmp_path, PASSWORD_USER, password=LOGIN_PASSWORD)
    result = subprocess.run([str(INV), "who"], cwd=directory, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == PASSWORD_USER


def test_invoke_runner_keeps_invokes_meaning_of_replace_env_and_timeouts():
    # In pytest, whose stdin refuses reads (stock invoke fails on it): the commands get none.
    from invoke import Config, Context
    from invoke.exceptions import CommandTimedOut

    from adapters.invoke import TransportRunner

    c = Context(Config(overrides={"runners": {"local": TransportRunner}}))
    assert c.run("echo ${HOME:-none} $X", env={"X": "1"}, replace_env=True,
                 hide=True).stdout == "none 1\n"
    assert c.run("echo ${HOME:-none}", hide=True).stdout == f"{os.environ['HOME']}\n"
    with pytest.raises(CommandTimedOut) as info:
        c.run("sleep 30", timeout=0.5, hide=True)
    assert info.value.result.exited == -9  # as invoke's own runner: the group got SIGKILL


def test_invoke_runner_takes_a_list_of_interpreters():
    # A list reached the shared targets' cache as a key, and a list is not hashable.
    from invoke import Config, Context

    from adapters.invoke import TransportRunner

    c = Context(Config(overrides={"runners": {"local": TransportRunner},
                                  "transport": {"python": ["/nowhere/python3", "/usr/bin/python3"]}}))
    # The command's parent is the target's interpreter: the one the list found.
    assert c.run("readlink -f /proc/$PPID/exe", hide=True).stdout.startswith("/usr/bin/python3")


def test_invoke_watchers_and_in_stream_as_with_invokes_own_runner():
    import io

    import invoke
    from invoke import Config, Context
    from invoke.watchers import Responder

    from adapters.invoke import TransportRunner

    outputs = {}
    for runner in (invoke.Local, TransportRunner):
        c = Context(Config(overrides={"runners": {"local": runner}, "run": {"in_stream": False}}))
        prompts = c.run("for n in 1 2; do printf \"Name $n? \"; read a; echo \"hi $a\"; done",
                        watchers=[Responder(pattern=r"Name 1\? ", response="ann\n"),
                                  Responder(pattern=r"Name 2\? ", response="bob\n")], hide=True)
        fed = c.run("cat; echo end", in_stream=io.StringIO("fed é\n"), hide=True)
        outputs[runner] = (prompts.stdout, fed.stdout)
    assert outputs[TransportRunner] == outputs[invoke.Local] == (
        "Name 1? hi ann\nName 2? hi bob\n", "fed é\nend\n")


def test_an_asynchronous_invoke_command_runs_alongside_the_next(tmp_path):
    from invoke import Config, Context

    from adapters.invoke import TransportRunner

    c = Context(Config(overrides={"runners": {"local": TransportRunner}}))
    flag = tmp_path / "released"
    promise = c.run(f"until [ -e {flag} ]; do sleep 0.01; done; echo released",
                    asynchronous=True, hide=True, timeout=30)
    c.run(f"touch {flag}", hide=True)  # behind the first, it would wait for its end
    assert promise.join().stdout == "released\n"


def test_a_pty_follows_our_terminals_size(tmp_path, monkeypatch):
    from invoke import Config, Context

    import adapters.invoke.runner
    from adapters.invoke import TransportRunner

    c = Context(Config(overrides={"runners": {"local": TransportRunner},
                                  "run": {"in_stream": False}}))
    terminal = {"size": (90, 30)}  # ours
    monkeypatch.setattr(adapters.invoke.runner, "pty_size", lambda: terminal["size"])
    before = signal.getsignal(signal.SIGWINCH)
    first, flag = tmp_path / "first", tmp_path / "resized"
    promise = c.run(f"stty size > {first}; until [ -e {flag} ]; do sleep 0.01; done; stty size",
                    pty=True, asynchronous=True, hide=True, timeout=30)
    assert written_text(first) == "30 90\n"
    terminal["size"] = (120, 50)
    os.kill(os.getpid(), signal.SIGWINCH)  # our window changed
    c.run(f"touch {flag}", hide=True)  # after the new size, on the same connection
    assert promise.join().stdout == "50 120\r\n"
    assert signal.getsignal(signal.SIGWINCH) == before  # ours is gone with the command


@contextlib.contextmanager
def _inv_task_with_marker(sshd, tmp_path: Path, task: str):
    """`inv TASK --marker M` running in the background (tasks_remote.py); yields (inv, marker
    file) and then kills inv and what it started, and removes the marker files."""
    directory = _invoke_project(sshd, tmp_path)
    marker = uuid.uuid4().hex
    inv = subprocess.Popen([str(INV), task, "--marker", marker], cwd=directory,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        yield inv, Path("/tmp", marker)
    finally:
        inv.kill()
        inv.wait()
        subprocess.run(["pkill", "-f", marker])
        for path in Path("/tmp").glob(f"{marker}*"):
            path.unlink()


def test_ctrl_c_stops_an_invoke_task_at_once(sshd, tmp_path):
    with _inv_task_with_marker(sshd, tmp_path, "follow") as (inv, marker):
        assert inv.stdout.readline() == "started\n"  # the remote command runs
        inv.send_signal(signal.SIGINT)
        assert inv.wait(timeout=60) != 0  # not after the command's 600 s
        # The remote command got the SIGINT.
        assert written_text(marker) == "interrupted\n"


def test_ctrl_c_on_a_pty_is_typed_at_the_commands_terminal(sshd, tmp_path):
    with _inv_task_with_marker(sshd, tmp_path, "follow-on-a-pty") as (inv, marker):
        # The job is in the terminal's foreground.
        assert written_text(marker.with_name(f"{marker.name}.started")) == "started\n"
        inv.send_signal(signal.SIGINT)
        out, err = inv.communicate(timeout=60)
        # The job got it; the shell went on, and so did inv.
        assert written_text(marker) == "interrupted\n"
        assert (inv.returncode, out) == (0, "exited 0: ^Cafter 3\n"), err


def test_invoke_sudo_runs_in_a_sudo_interpreter_with_the_configured_password(sshd, tmp_path):
    directory = _invoke_project(sshd, tmp_path, user="tp-sudo")
    env = dict(os.environ, INVOKE_SUDO_PASSWORD=SUDO_PASSWORD)  # sudo.password, as invoke reads it
    result = subprocess.run([str(INV), "root"], cwd=directory, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "root\ntp-app\n/tmp\nhello\n"
    env["INVOKE_SUDO_PASSWORD"] = "not-the-password"
    refused = subprocess.run([str(INV), "root"], cwd=directory, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=60, env=env)
    assert refused.returncode != 0 and refused.stdout == ""
    # invoke's AuthFailure, as stock's (its sudo() read a .reason ours lacked: AttributeError).
    last = refused.stderr.strip().splitlines()[-1]
    assert last == "invoke.exceptions.AuthFailure: The password submitted to prompt '[sudo] " \
                   "password: ' was rejected.", refused.stderr
    assert "not-the-password" not in refused.stderr + refused.stdout


def test_invoke_sudo_runs_commands_under_sudo_where_it_starts_no_interpreter(sshd, tmp_path):
    directory = _invoke_project(sshd, tmp_path, user="tp-limited")
    env = dict(os.environ, INVOKE_SUDO_PASSWORD=APP_PASSWORD)
    result = subprocess.run([str(INV), "limited"], cwd=directory, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "root\n1 ['is not allowed']\n"
    # With no password: sudo -n, so the command that needs one fails without a login tried.
    del env["INVOKE_SUDO_PASSWORD"]
    result = subprocess.run([str(INV), "limited"], cwd=directory, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60, env=env)
    assert (result.returncode, result.stdout) == (0, "root\n1 ['a password is required']\n"), \
        result.stderr


@pytest.mark.timeout(900)  # a virtualenv and invoke 3 from the package index come first
def test_invoke_3_alone(sshd, tmp_path):
    """invoke 3.x (which Fabric 3 does not allow) in an environment of its own."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "invoke>=3,<4"],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, f"cannot install invoke 3 from the package index: {install.stderr}"
    directory = _invoke_project(sshd, tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([str(venv / "bin" / "inv"), "who"], cwd=directory, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=60, env=env)
    _check_invoke_output(result)
    version = subprocess.run([str(venv / "bin" / "inv"), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("Invoke 3."), version.stdout
    sudo_project = _invoke_project(sshd, tmp_path, "tp-sudo")
    sudo = subprocess.run([str(venv / "bin" / "inv"), "root"], cwd=sudo_project, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60,
                          env=dict(env, INVOKE_SUDO_PASSWORD=SUDO_PASSWORD))
    assert sudo.returncode == 0 and sudo.stdout == "root\ntp-app\n/tmp\nhello\n", sudo.stderr


def test_inv_demo_deploys_through_the_transport(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path))
    result = subprocess.run([str(INV), "demo"], cwd=ROOT, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("== local:") and lines[2].startswith("running ")
    assert lines[-1] == "stopped"
    current = (tmp_path / "transport-demo" / "current").resolve()
    assert (current / "VERSION").read_text().strip() == lines[2].split()[1]


def test_gateways_and_agent_settings_map_onto_ssh_options():
    import shlex

    import fabric

    from adapters.fabric.connection import Connection

    outer = fabric.Connection("bastion1", user="a", port=2201, gateway="nc -X 5 -x socks:1080 %h %p",
                              connect_kwargs={"key_filename": "/k/outer"})
    inner = fabric.Connection("fe80::1", user="b", port=2202, gateway=outer)
    c = Connection("db1", user="deploy", gateway=inner,
                   connect_kwargs={"allow_agent": False, "key_filename": ["/k/one", "/k/two"]})
    options = c._ssh_options()
    assert options["ssh_options"]["IdentityAgent"] == "none"
    assert options["identity_file"] == ["/k/one", "/k/two"]
    # The main ssh's ProxyCommand: the last hop, reached through the first, which is
    # reached through the user's own ProxyCommand; ssh expands % once per level.
    last = shlex.split(options["ssh_options"]["ProxyCommand"].replace("%%", "%"))
    assert last[-4:] == ["-W", "db1:22", "--", "fe80::1"] and "b" == last[last.index("-l") + 1]
    first = shlex.split(next(a for a in last if a.startswith("ProxyCommand=")).split("=", 1)[1]
                        .replace("%%", "%"))
    assert first[-4:] == ["-W", "[fe80::1]:2202", "--", "bastion1"]
    assert first[first.index("-i") + 1] == "/k/outer" and "-i" not in last  # each its own key
    assert "ProxyCommand=nc -X 5 -x socks:1080 %h %p" in first
    both = Connection("db1", gateway=inner, config=fabric.Config(
        overrides={"transport": {"ssh_options": {"ProxyJump": "elsewhere"}}}))
    with pytest.raises(ValueError, match="ProxyJump"):  # ssh would take the first, silently
        both._ssh_options()


def test_paramiko_only_connect_kwargs_map_onto_ssh_options(sshd):
    # Each was refused by name: disabled_algorithms (old servers), the timeouts of
    # each phase (slow ones) and GSSAPI (Kerberos).
    from adapters.fabric.connection import Connection
    from adapters.targets import Targets

    def options(**connect_kwargs):
        return Connection("web1", connect_kwargs=connect_kwargs)._ssh_options()

    mapped = options(disabled_algorithms={"kex": ["a", "b"], "pubkeys": "rsa-sha2-512",
                                          "ciphers": []},
                     gss_auth=True, gss_deleg_creds=False, timeout=5, banner_timeout=60)
    assert {k: mapped["ssh_options"].get(k) for k in (
        "KexAlgorithms", "PubkeyAcceptedAlgorithms", "Ciphers", "GSSAPIAuthentication",
        "GSSAPIDelegateCredentials")} == {
        "KexAlgorithms": "-a,b", "PubkeyAcceptedAlgorithms": "-rsa-sha2-512", "Ciphers": None,
        "GSSAPIAuthentication": "yes", "GSSAPIDelegateCredentials": "no"}
    assert mapped["connect_timeout"] == 60 and mapped["backend"] == "auto"
    with pytest.raises(ValueError, match="disabled_algorithms.compression is not a kind"):
        options(disabled_algorithms={"compression": ["zlib"]})
    # Against the server: the client's key exchanges all disabled, none is left; all but
    # one, that one is.
    settings = subprocess.run(["ssh", "-G", "x"], capture_output=True, text=True,
                              check=True).stdout.splitlines()
    offered = next(line.split()[1] for line in settings if line.startswith("kexalgorithms "))
    offered = offered.split(",")
    for disabled, works in ((offered, False), (offered[:-1], True)):
        targets = Targets()
        try:
            c = _fast_connection(sshd, targets)
            c.connect_kwargs["disabled_algorithms"] = {"kex": disabled}
            if works:
                assert c.run("echo ok", hide=True).stdout == "ok\n"
            else:
                with pytest.raises(transport.ConnectError,
                                   match="no matching key exchange method found"):
                    c.run("echo ok", hide=True)
        finally:
            targets.close()


def test_a_refused_login_is_not_reported_as_a_sudo_failure(sshd, tmp_path):
    from fabric import Config

    from adapters.fabric.connection import Connection
    from adapters.targets import Targets

    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    config = Config(overrides={
        "connect_kwargs": {"key_filename": [str(other_key)]}, "sudo": {"password": SUDO_PASSWORD},
        "transport": {"ssh_options": {"UserKnownHostsFile": str(sshd.known_hosts)}}})
    targets = Targets()
    try:
        c = Connection(sshd.addresses[0], user="tp-sudo", port=sshd.port, config=config,
                       targets=targets)
        with pytest.raises(transport.AuthError, match="Permission denied"):
            c.sudo("true", hide=True)
    finally:
        targets.close()


def test_a_gateway_hop_logs_in_with_its_own_connections_settings(sshd):
    # Stock Fabric logs in to a gateway with that Connection's key and settings. OpenSSH's
    # ProxyJump would give the hop none of ours (this machine's root has no default key).
    import fabric
    from fabric import Config

    from adapters.fabric.connection import Connection
    from adapters.targets import Targets

    config = Config(overrides={
        "connect_kwargs": {"key_filename": [str(sshd.client_key)]},
        "transport": {"python": "/usr/bin/python3",
                      "ssh_options": {"UserKnownHostsFile": str(sshd.known_hosts),
                                      "StrictHostKeyChecking": "yes"}}})
    bastion = fabric.Connection(sshd.addresses[0], user="tp-plain", port=sshd.port, config=config)
    targets = Targets()
    try:
        c = Connection(sshd.addresses[1], user="tp-app", port=sshd.port, gateway=bastion,
                       config=config, targets=targets)
        assert c.run("whoami", hide=True).stdout == "tp-app\n"
        closed = fabric.Connection(sshd.addresses[0], user="tp-plain", port=free_port(),
                                   config=config)
        c = Connection(sshd.addresses[2], user="tp-app", port=sshd.port, gateway=closed,
                       config=config, targets=targets)
        with pytest.raises(transport.ConnectError) as info:  # the way in is the gateway
            c.run("whoami", hide=True)
        assert "Connection refused" in str(info.value)
    finally:
        targets.close()




def test_port_forwarding_as_on_stock_fabric(sshd, runtime_config, tmp_path):
    outputs = features_on_stock_and_fast(runtime_config, tmp_path, host(sshd, "tp-plain"),
                                         "tunnels")
    assert outputs[True] == outputs[False] == (
        "forward_local: [b'FIRST\\n', b'SECOND\\n']\nforward_remote: 'FROM THE HOST\\n'\n"
        "closed: True\n")


def _fast_connection(sshd, targets):
    """A Fabric Connection of the adapter's to the test server as tp-plain."""
    from fabric import Config

    from adapters.fabric.connection import Connection

    config = Config(overrides={
        "connect_kwargs": {"key_filename": [str(sshd.client_key)]},
        "transport": {"python": "/usr/bin/python3",
                      "ssh_options": {"UserKnownHostsFile": str(sshd.known_hosts)}}})
    return Connection(sshd.addresses[0], user="tp-plain", port=sshd.port, config=config,
                      targets=targets)


def test_a_remote_port_in_use_is_an_os_error_when_the_forward_starts(sshd):
    # As the README says (it was the transport's RemoteError).
    import errno

    from adapters.targets import Targets

    targets = Targets()
    try:
        c = _fast_connection(sshd, targets)
        with pytest.raises(OSError) as info:
            with c.forward_remote(sshd.port, local_port=1, remote_host=sshd.addresses[0]):
                pass
        assert info.value.errno == errno.EADDRINUSE, info.value
        assert str(info.value).startswith(f"[Errno {errno.EADDRINUSE}] tp-plain@"), info.value
    finally:
        targets.close()


@pytest.mark.parametrize("label", ["2.7", "3.6"])
def test_old_target_pythons_fail_and_name_paths_as_new_ones_do(label, tmp_path, monkeypatch):
    # A 2.7 target's socket.error was a RemoteError, not an OSError; normalize() and
    # chdir() gave 2.7 and 3.6 under the C locale a non-ASCII path as text they refused.
    import errno
    import socket

    from adapters.fabric.file_transfer import TransportSFTP, local_os_error
    from tests.support.interpreters import find_interpreters

    monkeypatch.setenv("LC_ALL", "C")
    monkeypatch.delenv("LANG", raising=False)
    directory = tmp_path / "d\u00e9"
    directory.mkdir()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    with busy, transport.Router() as router:
        ctx = router.local(python=find_interpreters()[label])
        sftp = TransportSFTP(ctx)
        assert sftp.normalize(str(directory / ".." / directory.name)) == str(directory)
        sftp.chdir(str(directory))
        assert sftp.getcwd() == str(directory)
        with pytest.raises(transport.RemoteError) as info:
            ctx.forward_remote(busy.getsockname()[1], 1, remote_host="127.0.0.1")
        error = local_os_error(ctx, info.value)
        assert isinstance(error, OSError) and error.errno == errno.EADDRINUSE, error


def test_a_get_never_makes_a_special_file_here(sshd, tmp_path):
    # Fabric's get chmods the local file to the remote one's mode, which a host says:
    # its permission bits only (as transport's own get), where stock's takes setuid too.
    from adapters.targets import Targets
    from tests import remote_functions as rf

    targets = Targets()
    try:
        c = _fast_connection(sshd, targets)
        c.run("echo data > special.txt", hide=True)
        assert c.call(rf.report_stat_modes_as, 0o106755)
        c.get("special.txt", str(tmp_path / "got"))
        assert oct(os.stat(tmp_path / "got").st_mode & 0o7777) == oct(0o755)
        assert c.call(rf.report_stat_modes_as, "0o777")
        with pytest.raises(transport.ProtocolError, match="malformed file status"):
            c.get("special.txt", str(tmp_path / "got2"))
        c.run("rm special.txt", hide=True)
    finally:
        targets.close()


def test_put_from_a_file_object_streams_it_in_pieces(sshd, tmp_path):
    # Stock Fabric (paramiko's putfo) reads a file object in pieces, so a large stream
    # is never held whole in memory; so does the transport's.

    from adapters.targets import Targets

    class Stream(io.RawIOBase):
        """A stream of 5 MiB that notes the largest read asked of it."""

        def __init__(self) -> None:
            self.left = 5 * 1024 * 1024
            self.largest = 0

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:  # Fabric rewinds a file object before sending it
            return True

        def seek(self, offset: int, whence: int = 0) -> int:
            return 0

        def tell(self) -> int:
            return 0

        def read(self, size: int = -1) -> bytes:
            self.largest = max(self.largest, self.left if size < 0 else size)
            piece = min(self.left, 1 << 20 if size < 0 else size)
            self.left -= piece
            return b"x" * piece

    targets = Targets()
    try:
        c = _fast_connection(sshd, targets)
        stream = Stream()
        c.put(stream, "streamed.bin")
        assert c.run("wc -c < streamed.bin && rm streamed.bin", hide=True).stdout == "5242880\n"
        assert 0 < stream.largest <= 1024 * 1024
        # As paramiko's SFTP client, a refused chmod is the local OSError (naming the host).
        with pytest.raises(PermissionError, match=sshd.addresses[0]):
            c.sftp().chmod("/etc/passwd", 0o600)
    finally:
        targets.close()


def test_a_command_left_running_at_the_end_is_no_lost_connection(sshd, runtime_config, tmp_path):
    """A disowned command still running when the run ends: the run closed the
    connection, which is not lost, so nothing says it was (stock says nothing)."""
    stock, fast = features_run_on_stock_and_fast(runtime_config, tmp_path, "-H",
                                                  host(sshd, "tp-plain"), "disowned")
    for result in (stock, fast):
        assert (result.returncode, result.stdout) == (0, "left running\n"), result.stderr
    assert "disconnected" not in fast.stderr and fast.stderr == stock.stderr
