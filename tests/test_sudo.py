"""sudo through a real ssh login: passwords, refusals, and keeping the password secret."""

from __future__ import annotations

import logging
import os
import pwd

import pytest

import transport
from tests.support.sshd import APP_PASSWORD, SUDO_PASSWORD
from transport.methods.sudo import SudoMethod

PY = "/usr/bin/python3"


def _login(router, sshd, user):
    return router.ssh("127.0.0.1", port=sshd.port, user=user, python=PY,
                      ssh_options=sshd.ssh_options())


def test_sudo_with_a_password(router, sshd):
    web = _login(router, sshd, "tp-sudo")
    root = router.sudo(via=web, user="root", password=SUDO_PASSWORD, python=PY)
    assert root.call(os.getuid) == 0
    assert web.call(os.getuid) != 0
    assert root.name.endswith("/sudo:root")


def test_passwordless_sudo(router, sshd):
    web = _login(router, sshd, "tp-nopw")
    assert router.sudo(via=web, python=PY).call(os.getuid) == 0


def test_a_password_given_to_a_passwordless_rule_is_not_read_as_payload(router, sshd):
    web = _login(router, sshd, "tp-nopw")
    assert router.sudo(via=web, password="unused", python=PY).call(os.getuid) == 0


def test_sudo_to_another_user(router, sshd):
    web = _login(router, sshd, "tp-nopw")
    app = router.sudo(via=web, user="tp-app", python=PY)
    assert app.call(os.getuid) == pwd.getpwnam("tp-app").pw_uid
    assert app.call(os.path.expanduser, "~") == "/home/tp-app"


def test_wrong_password_is_an_auth_error_at_once(router, sshd):
    web = _login(router, sshd, "tp-sudo")
    # A refusal that waited for the connect timeout would run into pytest's own (300 s).
    with pytest.raises(transport.AuthError) as info:
        router.sudo(via=web, password="wrong-password", python=PY, connect_timeout=600)
    assert "refused" in str(info.value)
    assert "wrong-password" not in str(info.value) and "wrong-password" not in repr(info.value)
    assert web.call(os.getuid) != 0  # the intermediary is unharmed


def test_missing_password_is_an_auth_error(router, sshd):
    web = _login(router, sshd, "tp-sudo")
    with pytest.raises(transport.AuthError) as info:
        router.sudo(via=web, python=PY, connect_timeout=60)
    assert str(info.value).endswith("sudo: a password is required (no password was given)")


def test_user_not_in_sudoers_is_an_auth_error_with_sudos_message(router, sshd):
    web = _login(router, sshd, "tp-nosudo")
    with pytest.raises(transport.AuthError) as info:
        router.sudo(via=web, password=APP_PASSWORD, python=PY)  # its own, correct password
    assert "not in the sudoers file" in str(info.value)


def test_local_sudo_from_the_controller(router, test_users):
    ctx = router.sudo(user="tp-app", python=PY)
    assert ctx.call(os.getuid) == pwd.getpwnam("tp-app").pw_uid


def test_password_never_visible(router, sshd, caplog):
    secret = SUDO_PASSWORD
    web = _login(router, sshd, "tp-sudo")
    caplog.set_level(logging.DEBUG)
    root = router.sudo(via=web, password=secret, python=PY)
    # Process arguments: no process on the machine carries it.
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    assert secret.encode() not in f.read(), f"password in the arguments of pid {pid}"
            except OSError:
                pass
    # Logs, reprs and exception messages.
    with pytest.raises(transport.AuthError) as info:
        router.sudo(via=web, password=secret + "-wrong", python=PY)
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in caplog.text
    assert all(secret not in repr(r.args) for r in caplog.records)
    assert secret not in repr(root) and secret not in repr(SudoMethod(password=secret))


def _become(router, sshd, method, python):
    """A context of `method` started with python=, through a login as the sudo user."""
    if method == "local":
        return router.local(python=python)
    web = _login(router, sshd, "tp-sudo")
    password = SUDO_PASSWORD if method == "sudo" else APP_PASSWORD
    user = "root" if method == "sudo" else "tp-app"
    return getattr(router, method)(via=web, user=user, password=password, python=python)


@pytest.mark.parametrize("method", ["local", "sudo", "su"])
def test_the_first_python_found_of_a_list_runs(router, sshd, method):
    # A list was a TypeError for all but ssh(): a host with python3 in another place
    # needed a connect per guess.
    ctx = _become(router, sshd, method, ["/nowhere/python3", "no-such-python", "python3"])
    assert ctx.python.endswith("python3") and ctx.call(os.path.exists, ctx.python)
    assert ctx.call(os.getuid) == {"local": os.getuid(), "sudo": 0,
                                   "su": pwd.getpwnam("tp-app").pw_uid}[method]
    with pytest.raises(transport.ConnectError) as info:
        _become(router, sshd, method, ("/nowhere/python3", "no-such-python"))
    assert not isinstance(info.value, transport.AuthError)
    assert "no usable Python interpreter at any of /nowhere/python3, no-such-python" in str(info.value)
    assert "transport: no Python interpreter found" not in str(info.value)  # named once


@pytest.mark.parametrize("python, error, words", [
    ([], ValueError, "{method}(python=[]) names no interpreter"),
    (["python3", None], TypeError,
     "{method}(python=[...]) holds interpreters' paths or names, not ['python3', None]"),
    (3, TypeError, "{method}(python=...) is an interpreter's path or name, or a list of them, not 3"),
])
@pytest.mark.parametrize("method", ["local", "sudo", "su"])
def test_a_python_no_method_could_run_is_refused_at_once(router, method, python, error, words):
    # A list reached the spawn as an argv item: sudo's connect then waited its whole timeout.
    with pytest.raises(error) as info:
        getattr(router, method)(python=python)
    assert str(info.value) == words.format(method=method)


def test_a_tool_missing_on_the_hop_is_named_not_python(router, sshd, python3_only_dir):
    # The hop's interpreter starts with a PATH that has only a python3: sudo, su and ssh
    # are not on it. Each was reported as "no usable Python interpreter at ...".
    web = router.ssh("127.0.0.1", port=sshd.port, user="tp-sudo", python="python3",
                     search_path=python3_only_dir, ssh_options=sshd.ssh_options())
    attempts = {
        "sudo": lambda: router.sudo(via=web, password=SUDO_PASSWORD, python=PY),
        "su": lambda: router.su(via=web, user="tp-app", password=APP_PASSWORD, python=PY),
        "ssh": lambda: router.ssh("127.0.0.1", via=web, python=PY),
        # Started by a shell that gives it its own pid (for the password's script).
        "ssh with a password": lambda: router.ssh("127.0.0.1", via=web, python=PY,
                                                  password="x")}
    for what, attempt in attempts.items():
        tool = what.split()[0]
        with pytest.raises(transport.ConnectError) as info:
            attempt()
        assert f"cannot start {tool}: " in str(info.value), str(info.value)
        assert str(info.value).endswith(
            f"No such file or directory (is {tool} installed there, and on the PATH it "
            "starts with?)")
        assert "Python" not in str(info.value)


def test_an_interpreter_no_exec_takes_fails_the_start_at_once(router, caplog):
    # A path with a NUL in it: the spawn's ValueError was logged on the router's thread
    # and the connect waited for its timeout (test_chains has it through an intermediary).
    with pytest.raises(transport.ConnectError) as info:
        router.sudo(python="/usr/bin/python3\0x", connect_timeout=60)
    assert str(info.value) == "sudo:root: cannot start 'sudo': ValueError: embedded null byte"
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("arguments, error, words", [
    ({"user": None}, TypeError, "user is a user name, not None"),
    ({"user": ""}, ValueError, "'' is not a user name"),
    ({"user": "-s/bin/sh"}, ValueError, "'-s/bin/sh' is not a user name"),  # su's option
    ({"user": "app user"}, ValueError, "'app user' is not a user name"),
    ({"password": 123456}, TypeError, "password is a str, not int"),
    # The tool reads one line: the rest reached the interpreter, and its error showed it.
    ({"password": "right\n123456"}, ValueError, "password is a str of one line"),
    ({"password": "right\r"}, ValueError, "password is a str of one line"),
])
@pytest.mark.parametrize("method", ["sudo", "su"])
def test_a_user_or_password_no_tool_could_take_is_refused_at_once(router, method, arguments,
                                                                   error, words):
    # They failed deep inside (an int password as AttributeError); su read a user name
    # starting with "-" as an option of its own.
    with pytest.raises(error) as info:
        getattr(router, method)(python="/usr/bin/python3", **arguments)
    assert str(info.value) == words and "123456" not in str(info.value)


def test_the_adapters_take_a_password_a_config_gives_as_a_number():
    # YAML's `password: 1234`: stock Fabric and salt-ssh write it to sudo as text.
    from adapters.targets import Targets

    targets = Targets()
    try:
        here = targets.local()
        as_root = targets.sudo(here, "root", 123456)  # root: sudo asks no password
        assert as_root.call(os.getuid) == 0
        # A config's password with its own line end (a YAML block, a file read whole)
        # is its first line, as the one line sudo reads of what stock writes.
        assert targets.sudo(here, "root", "123456\n").call(os.getuid) == 0
    finally:
        targets.close()
