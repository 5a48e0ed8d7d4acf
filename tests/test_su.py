"""su through a real ssh login, answering its password prompt over a pipe."""

from __future__ import annotations

import os
import pwd

import pytest

import transport
from tests.support.sshd import APP_PASSWORD
from transport.methods.su import SuMethod

PY = "/usr/bin/python3"


def _login(router, sshd):
    return router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", python=PY,
                      ssh_options=sshd.ssh_options())


def test_su_with_the_right_password(router, sshd):
    web = _login(router, sshd)
    app = router.su(via=web, user="tp-app", password=APP_PASSWORD, python=PY)
    assert app.call(os.getuid) == pwd.getpwnam("tp-app").pw_uid
    assert app.name.endswith("/su:tp-app")


def test_su_wrong_password_is_an_auth_error(router, sshd):
    web = _login(router, sshd)
    with pytest.raises(transport.AuthError) as info:
        router.su(via=web, user="tp-app", password="not-it", python=PY)
    assert "Authentication failure" in str(info.value)
    assert "not-it" not in str(info.value)


def test_su_without_a_password_when_one_is_needed(router, sshd):
    web = _login(router, sshd)
    with pytest.raises(transport.AuthError, match="password is required"):
        router.su(via=web, user="tp-app", python=PY)


def test_su_as_root_needs_no_password(router, test_users):
    app = router.su(user="tp-app", python=PY)
    assert app.call(os.getuid) == pwd.getpwnam("tp-app").pw_uid


def test_su_password_not_in_arguments_or_repr(router, sshd):
    web = _login(router, sshd)
    app = router.su(via=web, user="tp-app", password=APP_PASSWORD, python=PY)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    assert APP_PASSWORD.encode() not in f.read()
            except OSError:
                pass
    assert APP_PASSWORD not in repr(app)
    assert APP_PASSWORD not in repr(SuMethod("tp-app", password=APP_PASSWORD))


def test_an_interpreter_the_user_may_not_run_is_no_auth_error(router, test_users, tmp_path):
    # The shell's "Permission denied" is not su's: the password was not the problem.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    unreadable = private / "python3"
    os.symlink(PY, unreadable)
    with pytest.raises(transport.ConnectError) as info:
        router.su(user="tp-app", python=str(unreadable))
    assert not isinstance(info.value, transport.AuthError)
    assert str(info.value).startswith(f"su:tp-app: no usable Python interpreter at '{unreadable}'")
    assert "Permission denied" in str(info.value)


def test_an_attempt_that_times_out_leaves_nothing_running(router, test_users):
    # su starts its command in a session of its own: only a signal su passes on reaches
    # it, and only if the shell became the interpreter (a hung sitecustomize, say).
    import subprocess
    import tempfile
    import time
    import uuid
    from pathlib import Path

    # This run's own sleep: one an earlier run left (killed in its second) is not ours.
    duration = f"3607.{uuid.uuid4().int % 10**9:09d}"
    with tempfile.TemporaryDirectory() as where:  # one tp-app may enter
        os.chmod(where, 0o755)
        hung = Path(where) / "hung-python"
        hung.write_text(f"#!/bin/sh\nexec sleep {duration}\n")
        hung.chmod(0o755)
        with pytest.raises(transport.ConnectError, match="timed out after 1s"):
            router.su(user="tp-app", python=str(hung), connect_timeout=1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-u", "tp-app", "-f", f"^sleep {duration}$"],
                              capture_output=True, text=True).stdout.split()
        if not left:
            break
        time.sleep(0.1)
    assert not left
