"""Logging in over ssh with a password (tp-pass has no authorised key) or with a key that
has a passphrase, both backends."""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
import tempfile

import pytest

import transport
from tests.support.interpreters import find_interpreters
from tests.support.sshd import LOGIN_PASSWORD, PASSWORD_USER

# How the server asks: keyboard-interactive (PAM's "Password:", which OpenSSH tries first)
# or the password method; paramiko answers both with the password.
WAYS = {"openssh-keyboard-interactive": ("openssh", {}),
        "openssh-password": ("openssh", {"PreferredAuthentications": "password"}),
        "paramiko": ("paramiko", {})}


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Where the controller writes the script ssh asks for the password with."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def _login(router, sshd, way, password, **kwargs):
    backend, options = WAYS[way]
    options = {**sshd.ssh_options(), **options}
    return router.ssh("127.0.0.1", port=sshd.port, user=PASSWORD_USER, python="/usr/bin/python3",
                      ssh_options=options, backend=backend, password=password, **kwargs)


@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_login_password_logs_in(router, sshd, way, private_tmp):
    ctx = _login(router, sshd, way, LOGIN_PASSWORD)
    assert ctx.call(os.getuid) == pwd.getpwnam(PASSWORD_USER).pw_uid
    assert ctx.run("echo $HOME").stdout == f"/home/{PASSWORD_USER}\n".encode()
    assert list(private_tmp.iterdir()) == []  # the script is gone once the login is done


@pytest.mark.parametrize("way", sorted(WAYS))
@pytest.mark.parametrize("password", ["wrong", None])
def test_a_wrong_or_missing_login_password_is_an_auth_error(router, sshd, way, password,
                                                             private_tmp, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(transport.AuthError) as info:
        _login(router, sshd, way, password, connect_timeout=20)
    assert str(info.value).startswith(f"{PASSWORD_USER}@127.0.0.1:{sshd.port}: ")
    # With the password: ssh asked again (keyboard-interactive, then the password method),
    # or it was asked once and ssh gave up (the password method alone).
    assert ("the password was refused" if password and way != "paramiko" else
            "authentication refused") in str(info.value)
    assert "Permission denied" in str(info.value) or way.endswith("interactive")
    assert list(private_tmp.iterdir()) == []
    assert "wrong" not in caplog.text
    # The host keeps working for those who know the password.
    assert _login(router, sshd, way, LOGIN_PASSWORD).call(pow, 2, 5) == 32


@pytest.mark.parametrize("backend", ["openssh", "paramiko"])
def test_a_key_that_works_is_used_before_the_password(router, sshd, backend):
    before = sshd.log.read_text()
    ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", python="/usr/bin/python3",
                     ssh_options=sshd.ssh_options(), backend=backend, password="not-it")
    assert ctx.call(os.getuid) == pwd.getpwnam("tp-plain").pw_uid
    assert "Accepted publickey for tp-plain" in sshd.log.read_text()[len(before):]


def test_the_login_password_is_in_no_argument_environment_or_log(router, sshd, caplog):
    caplog.set_level(logging.DEBUG)
    ctx = _login(router, sshd, "openssh-keyboard-interactive", LOGIN_PASSWORD)
    assert ctx.call(os.getpid)
    secret = LOGIN_PASSWORD.strip().encode()
    seen = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as f:
                    if secret in f.read():
                        seen.append((pid, part))
            except OSError:  # gone meanwhile
                pass
    assert seen == []
    assert LOGIN_PASSWORD.strip() not in caplog.text
    assert "password=set" in repr(_method_of(LOGIN_PASSWORD))
    assert LOGIN_PASSWORD.strip() not in repr(_method_of(LOGIN_PASSWORD))


def _method_of(password):
    from transport.methods.ssh import SshMethod

    return SshMethod("web1", password=password)


def test_a_login_password_through_an_intermediary(router, sshd, private_tmp):
    hop = router.local(python=find_interpreters()["2.7"])
    ctx = _login(router, sshd, "openssh-keyboard-interactive", LOGIN_PASSWORD, via=hop)
    assert ctx.call(os.getuid) == pwd.getpwnam(PASSWORD_USER).pw_uid
    with pytest.raises(transport.AuthError, match="the password was refused"):
        _login(router, sshd, "openssh-keyboard-interactive", "wrong", via=hop)


def test_an_unknown_host_key_is_not_answered_with_the_password(router, sshd, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    with pytest.raises(transport.HostKeyError, match="its host key is unknown"):
        router.ssh("127.0.0.1", port=sshd.port, user=PASSWORD_USER, python="/usr/bin/python3",
                   password=LOGIN_PASSWORD,
                   ssh_options={**sshd.ssh_options(), "UserKnownHostsFile": str(known_hosts),
                                "StrictHostKeyChecking": "ask"})
    assert known_hosts.read_text() == ""


def test_a_proxy_hop_that_asks_for_a_password_gets_none(router, sshd):
    """The password is for the host named; an ssh the ProxyCommand runs (for a jump host
    with no key) asks the same script, which answers only the ssh transport started."""
    before = sshd.log.read_text()
    hop = " ".join(["ssh", *[f"-o{k}={v}" for k, v in sshd.ssh_options().items()
                           if k != "BatchMode"],
                    "-p", str(sshd.port), "-l", PASSWORD_USER, "-W", "%h:%p", "127.0.0.2"])
    with pytest.raises(transport.ConnectError) as info:
        router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", python="/usr/bin/python3",
                   password=LOGIN_PASSWORD, connect_timeout=20,
                   ssh_options={**sshd.ssh_options(), "ProxyCommand": hop})
    # The hop's refusal (its ssh asked again and again, unanswered), not the password's.
    assert "from 127.0.0.2" in str(info.value) and "password was refused" not in str(info.value)
    attempts = sshd.log.read_text()[len(before):]
    assert f"Accepted keyboard-interactive/pam for {PASSWORD_USER}" not in attempts


@pytest.mark.parametrize("password", ["two\nlines", "nul\0", 42])
def test_a_password_no_prompt_could_take_is_refused_at_once(router, password):
    with pytest.raises(ValueError, match="password is a str of one line") as info:
        router.ssh("web1", password=password)
    assert "two" not in str(info.value) and "nul" not in str(info.value)


def test_a_gateway_with_a_password_is_refused_as_a_proxy_hop():
    from transport.methods.ssh import SshMethod, forwarding_command

    with pytest.raises(ValueError, match="a password or passphrase cannot be answered "
                                         "through a ProxyCommand"):
        forwarding_command([SshMethod("bastion", password="x")], "web1", 22)


PASSPHRASE = "key 'phrase' \\ $HOME"


@pytest.fixture
def encrypted_key(sshd, tmp_path):
    """A key with a passphrase, authorised for tp-pass while the test runs."""
    key = tmp_path / "encrypted_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(key)],
                   check=True)
    revoke = sshd.authorize(PASSWORD_USER, (tmp_path / "encrypted_key.pub").read_text())
    yield key
    revoke()


@pytest.mark.parametrize("backend", ["openssh", "paramiko"])
def test_a_passphrase_opens_an_encrypted_key(router, sshd, backend, encrypted_key, private_tmp):
    # Such a key could only be used through an agent.
    login = dict(port=sshd.port, user=PASSWORD_USER, python="/usr/bin/python3", backend=backend,
                 ssh_options=sshd.ssh_options(), identity_file=str(encrypted_key))
    ctx = router.ssh("127.0.0.1", passphrase=PASSPHRASE, **login)
    assert ctx.call(os.getuid) == pwd.getpwnam(PASSWORD_USER).pw_uid
    before = sshd.log.read_text()
    with pytest.raises(transport.AuthError) as info:
        router.ssh("127.0.0.1", passphrase="not-it", **login)
    # OpenSSH skips a key it cannot open, and says no more; paramiko says why.
    assert ("Permission denied" if backend == "openssh" else
            "the passphrase does not open the key") in str(info.value)
    assert "not-it" not in str(info.value)
    # No password was tried for it (none was given): the key was the only way in.
    attempts = sshd.log.read_text()[len(before):]
    assert "Failed password" not in attempts and "keyboard-interactive" not in attempts
    assert list(private_tmp.iterdir()) == []


def test_a_password_and_a_passphrase_each_answer_their_own_question(router, sshd, encrypted_key):
    # The key's path holds the word "password": the question about it is still the key's.
    key = encrypted_key.with_name("password_key")
    encrypted_key.rename(key)
    ctx = router.ssh("127.0.0.1", port=sshd.port, user=PASSWORD_USER, python="/usr/bin/python3",
                     ssh_options=sshd.ssh_options(), identity_file=str(key),
                     password="not-it", passphrase=PASSPHRASE)
    assert ctx.call(os.getuid) == pwd.getpwnam(PASSWORD_USER).pw_uid


def test_a_temporary_directory_that_cannot_hold_the_script_is_named(router, tmp_path,
                                                                    monkeypatch):
    missing = tmp_path / "gone"
    monkeypatch.setattr(tempfile, "tempdir", str(missing))
    with pytest.raises(transport.ConnectError) as info:
        router.ssh("127.0.0.1", password="x")
    assert (f": cannot write the script ssh asks for passwords with: {missing}/transport-askpass-"
            in str(info.value))
    assert str(info.value).endswith(": No such file or directory"), str(info.value)
