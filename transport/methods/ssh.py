"""The ssh method: the OpenSSH client, so ~/.ssh/config, ssh-agent, ProxyJump,
certificates and ControlMaster apply exactly as they do for `ssh`.

Our own options are few and stated: BatchMode=yes (there is no terminal to
answer a prompt on, so a missing key fails at once instead of hanging),
ConnectTimeout from connect_timeout, Compression=no unless the caller
asks for compression (ssh's compression caps incompressible data at about
30 MiB/s), and ServerAliveInterval=15 with ServerAliveCountMax=3 (a host that
stops answering, powered off or cut off, fails its calls within 45-60 s instead
of the two hours TCP would take). Host-key checking follows the user's ssh
config unless check_host_keys says otherwise. ControlPersist=1 (it matters only
where the config turns ControlMaster on): a master our ssh starts runs in the
background, not as our ssh itself, so the other sessions it serves (other
contexts, an operator's own ssh) outlive our context, and it leaves one second
after its last; an existing master is used as ssh uses it.

With a login password or a key's passphrase, BatchMode is off and ssh asks for
them through SSH_ASKPASS: a small script (askpass_script) that writes our prompt
on ssh's stderr and reads the answer from ssh's stdin, where the connection
writes it before the bootstrap, as for sudo. Neither is ever in an argument or
the environment. The script answers only the ssh we started (not a ProxyJump
hop's) and only the questions we have an answer for; any other (an unknown host
key, a passphrase or password not given) gets none, as in batch mode. ssh asks
once for each (NumberOfPasswordPrompts=1); with a passphrase and no password,
password logins are off.
"""

from __future__ import annotations

import os

from transport.bootstrap import shell_join
from transport.errors import AuthError, ConnectError, HostKeyError
from transport.methods.local import check_secret, program_not_found, python_start_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from transport.bootstrap import Bootstrap

HOST_KEY_POLICIES = {
    "accept-new": {"StrictHostKeyChecking": "accept-new"},
    "ignore": {"StrictHostKeyChecking": "no", "UserKnownHostsFile": "/dev/null"},
    "strict": {"StrictHostKeyChecking": "yes"},
}
AUTH_REFUSED = ("Permission denied", "Too many authentication failures",
                "no supported authentication methods")
UNREACHABLE = ("Connection refused", "Could not resolve hostname", "No route to host",
               "Connection timed out", "Network is unreachable",
               "Connection closed by", "Connection reset by", "kex_exchange_identification",
               "Operation timed out", "Name or service not known")
HOST_KEY_FAILED = "Host key verification failed"
# Lines that say why a login or a connection failed, printed before the failure itself:
# a key file ssh could not use, a ProxyCommand's program the shell did not find.
CAUSES = ("Identity file", "Load key", "not found", "No such file or directory")
DEBUG_PREFIXES = ("debug1: ", "debug2: ", "debug3: ")
# What ssh says of a known key that differs: its warning, the known_hosts line, the rule.
HOST_KEY_CHANGED = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Offending ",
                    "has changed and you have requested strict checking")
HOST_KEY_UNKNOWN = ("host key is known for", HOST_KEY_FAILED)
PASSWORD_PROMPT = "[transport:ssh:password]"
PASSPHRASE_PROMPT = "[transport:ssh:passphrase]"
# Runs ssh with its own process id in TRANSPORT_SSH_PID (exec keeps it), for askpass_script.
WITH_OWN_PID = 'TRANSPORT_SSH_PID=$$; export TRANSPORT_SSH_PID; exec "$@"'
ASKPASS_FAILED = "ssh_askpass: exec("


def option_values(ssh_options: Any) -> dict[str, str]:
    """ssh_options as `ssh -o` takes them: values as text, True and False as yes and no
    (which OpenSSH's "Compression=True" refused, and paramiko's check took for no)."""
    if ssh_options is None:
        return {}
    if not isinstance(ssh_options, dict):
        raise TypeError("ssh_options is a dict of ssh_config names to values, not "
                        f"{type(ssh_options).__name__}")
    values = {}
    for key, value in ssh_options.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"ssh_options names are ssh_config keywords, not {key!r}")
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif not isinstance(value, str):
            raise TypeError(f"ssh_options[{key!r}] is {type(value).__name__}: values are text, "
                            "numbers or True/False")
        values[key] = value
    return values


class SshMethod:
    """Start `python` on `host` through the OpenSSH client."""

    def __init__(self, host: str, *, port: int | None = None, user: str | None = None,
                 python: str | list[str] = "python3",
                 identity_file: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None,
                 ssh_options: dict[str, str] | None = None, check_host_keys: str | None = None,
                 compression: bool = False, connect_timeout: float = 30.0,
                 search_path: str | None = None, ssh_path: str = "ssh",
                 password: str | None = None, passphrase: str | None = None) -> None:
        if check_host_keys is not None and check_host_keys not in HOST_KEY_POLICIES:
            raise ValueError(f"check_host_keys must be one of {sorted(HOST_KEY_POLICIES)} or None")
        self.host = host
        self.port = port
        self.user = user
        self.python = python
        self.search_path = search_path  # the PATH python is looked for on (None: the login's)
        # One key file or several, tried in order (ssh -i, repeated).
        self.identity_files = ([os.fspath(identity_file)]
                               if isinstance(identity_file, (str, os.PathLike))
                               else [os.fspath(path) for path in identity_file or ()])
        if user is not None and not isinstance(user, str):
            raise TypeError(f"user is a user name, not {type(user).__name__}")
        check_secret("password", password)
        check_secret("passphrase", passphrase)
        self._password = password
        self._passphrase = passphrase
        self.ssh_options = option_values(ssh_options)
        self.check_host_keys = check_host_keys
        self.compression = compression
        self.connect_timeout = connect_timeout
        self.ssh_path = ssh_path

    def default_name(self) -> str:
        name = f"{self.user}@{self.host}" if self.user else self.host
        return f"{name}:{self.port}" if self.port else name

    def client_options(self) -> dict[str, str]:
        options = {"BatchMode": "yes", "ConnectTimeout": str(max(1, int(self.connect_timeout))),
                   "Compression": "yes" if self.compression else "no",
                   "ServerAliveInterval": "15", "ServerAliveCountMax": "3",
                   "ControlPersist": "1"}
        options.update(HOST_KEY_POLICIES.get(self.check_host_keys or "", {}))
        options.update(self.ssh_options)
        if self._asks:  # a secret given is meant to be used
            options.update(BatchMode="no", NumberOfPasswordPrompts="1")
            if self._password is None:
                options.update(PasswordAuthentication="no", KbdInteractiveAuthentication="no")
        return options

    @property
    def _asks(self) -> bool:
        """Whether ssh may ask us something (through SSH_ASKPASS)."""
        return self._password is not None or self._passphrase is not None

    def argv(self, bootstrap: Bootstrap) -> list[str]:
        remote_command = bootstrap.shell_command(self.python, self.search_path)
        argv = [self.ssh_path, "-T", *self._client_args(self.client_options()), "--", self.host,
                remote_command]
        if self._asks:
            return ["/bin/sh", "-c", WITH_OWN_PID, "sh", *argv]
        return argv

    def forward_argv(self, host: str, port: int | None, proxy_command: str | None = None) -> list[str]:
        """The argv of an ssh that, logged in here, joins its stdin and stdout to
        host:port (ssh -W): one hop of a forwarding_command().

        proxy_command: how this hop itself is reached (already in ssh's % syntax).
        """
        if self._asks:
            raise ValueError(f"gateway {self.default_name()}: a password or passphrase cannot "
                             "be answered through a ProxyCommand (use the agent)")
        options = self.client_options()
        if proxy_command is not None:
            options["ProxyCommand"] = proxy_command
        address = f"[{host}]" if ":" in host else host
        return [self.ssh_path, *self._client_args(options), "-W", f"{address}:{port or 22}", "--",
                self.host]

    def _client_args(self, options: dict[str, str]) -> list[str]:
        # ssh keeps the first value it is given: the host's own port and user come first,
        # so they win over a Port or User in ssh_options, as with the paramiko backend.
        argv = []
        if self.port:
            argv += ["-p", str(self.port)]
        if self.user:
            argv += ["-l", self.user]
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        for identity_file in self.identity_files:
            argv += ["-i", identity_file]
        return argv

    def __repr__(self) -> str:
        password = "set" if self._password is not None else "none"
        passphrase = "set" if self._passphrase is not None else "none"
        return (f"{type(self).__name__}({self.default_name()!r}, password={password}, "
                f"passphrase={passphrase})")

    def options(self) -> dict[str, Any]:
        if not self._asks:
            return {}
        options: dict[str, Any] = {"askpass": askpass_script(self._password is not None,
                                                             self._passphrase is not None)}
        if self._password is not None:
            options.update(prompt=PASSWORD_PROMPT.encode(), password=self._password.encode())
        if self._passphrase is not None:  # asked once for each key it opens
            options["repeated_prompts"] = {PASSPHRASE_PROMPT.encode(): self._passphrase.encode()}
        return options

    def connect_error(self, name: str, reason: str, details: dict[str, Any]) -> ConnectError:
        # ssh's debug lines (LogLevel DEBUG in a config) explain nothing and name causes
        # that are none ("No such file or directory" of a known_hosts file it skipped).
        stderr = "\n".join(line for line in (details.get("stderr") or "").splitlines()
                           if not line.startswith(DEBUG_PREFIXES))
        details = {**details, "stderr": stderr}
        ssh_lines = [line for line in stderr.splitlines() if line.strip()]
        if details.get("auth"):  # ssh asked for the password again
            said = _last(ssh_lines, AUTH_REFUSED) if ssh_lines else ""
            return AuthError(name, reason + (f": {said}" if said else ""))
        if (self._asks and details.get("exit_status") == 127
                and "exec" in stderr):  # the shell that gives ssh its pid found no ssh
            return program_not_found(name, self.ssh_path, "No such file or directory")
        if details.get("exit_status") == 255 and ssh_lines:  # ssh's own failure
            error = self._ssh_failure(name, stderr, ssh_lines, details.get("password_asked"))
            error.ssh_messages = "\n".join(ssh_lines)
            return error
        return python_start_error(name, self.python, reason, details, program=self.ssh_path,
                                  login_shell=True)

    def _ssh_failure(self, name: str, stderr: str, ssh_lines: list[str],
                     password_asked: bool = False) -> ConnectError:
        if ASKPASS_FAILED in stderr:
            return ConnectError(name, "ssh could not run the script that answers its password "
                                "prompt: " + _last(ssh_lines, (ASKPASS_FAILED,)) + " (is the "
                                "temporary directory mounted noexec? Point TMPDIR at another)")
        if any(text in stderr for text in AUTH_REFUSED):
            # ssh asked for the password (once) and was refused all the same.
            refused = "the password was refused: " if password_asked else "authentication refused: "
            return AuthError(name, refused + _last(ssh_lines, AUTH_REFUSED) + _causes(ssh_lines))
        if HOST_KEY_FAILED in stderr:
            return host_key_error(name, ssh_lines)
        if any(text in stderr for text in UNREACHABLE):
            return ConnectError(name, _every(ssh_lines, UNREACHABLE) + _causes(ssh_lines))
        return ConnectError(name, "ssh failed: " + ssh_lines[-1])


def askpass_script(password: bool, passphrase: bool) -> bytes:
    """The SSH_ASKPASS script: ssh runs it with its question as $1; for the questions
    we answer (a password, a key's passphrase) it writes our prompt on ssh's stderr
    and gives ssh what the connection writes on ssh's stdin."""
    def case(pattern: str, prompt: str, answered: bool) -> str:
        return f"{pattern}) printf '%s\\n' '{prompt}' >&2 ;;\n" if answered else f"{pattern}) exit 1 ;;\n"

    return ("#!/bin/sh\n"
            '[ "$PPID" = "$TRANSPORT_SSH_PID" ] || exit 1\n'
            'case "$1" in\n'
            # First: a key file's path may hold the word password.
            + case('"Enter passphrase for "*', PASSPHRASE_PROMPT, passphrase)
            + case("*assword*", PASSWORD_PROMPT, password)
            + "*) exit 1 ;;\n"
            "esac\n"
            "IFS= read -r answer || exit 1\n"
            "printf '%s\\n' \"$answer\"\n").encode()


def forwarding_command(hops: list[SshMethod], host: str, port: int | None,
                       first_proxy: str | None = None) -> str:
    """A ProxyCommand (for ssh_options) that reaches host:port through hops, first hop first.

    Each hop is an `ssh -W` run with that hop's own SshMethod settings (key files,
    host-key checking, BatchMode, timeouts): what OpenSSH's ProxyJump, whose hops
    read ~/.ssh/config alone, cannot give them. first_proxy: how the first hop is
    reached, if not directly (a ProxyCommand of the caller's, in ssh's % syntax).
    """
    if not hops:
        raise ValueError("forwarding_command needs at least one hop")
    proxy = first_proxy
    for index, hop in enumerate(hops):
        last = index == len(hops) - 1
        next_host, next_port = (host, port) if last else (hops[index + 1].host, hops[index + 1].port)
        argv = hop.forward_argv(next_host, next_port, proxy)
        backslashed = [arg for arg in argv if "\\" in arg]
        if backslashed:
            # ssh checks the quotes of each -o value, reading \' in one as an escape.
            raise ValueError(f"gateway {hop.default_name()}: a setting with a backslash cannot "
                             f"be passed through a ProxyCommand: {backslashed[0]!r}")
        proxy = shell_join(argv).replace("%", "%%")  # ssh expands % tokens in a ProxyCommand
    return proxy


def host_key_error(name: str, ssh_lines: list[str]) -> HostKeyError:
    """ssh refused the host's key: changed (its warning and the known_hosts line named)
    or unknown."""
    if any(text in line for line in ssh_lines for text in HOST_KEY_CHANGED):
        return host_key_changed(name, _sentences(ssh_lines,
                                                 HOST_KEY_CHANGED[1:] + (HOST_KEY_FAILED,)))
    return host_key_unknown(name, _sentences(ssh_lines, HOST_KEY_UNKNOWN))


def host_key_changed(name: str, said: str) -> HostKeyError:
    """A HostKeyError for a known key that differs; said: what the client said of it."""
    return HostKeyError(name, f"its host key has changed (a reinstalled host, or someone in "
                              f"the middle): {said}", changed=True)


def host_key_unknown(name: str, said: str) -> HostKeyError:
    """A HostKeyError for a host with no known key (with how to accept it)."""
    return HostKeyError(name, f"its host key is unknown: {said} Add it to known_hosts "
                              "(ssh-keyscan shows it), or accept new keys "
                              "(StrictHostKeyChecking=accept-new).", changed=False)


def _sentences(lines: list[str], patterns: tuple[str, ...]) -> str:
    """The matching lines, each a sentence ending in a full stop, joined by spaces."""
    return " ".join(line.strip().rstrip(".") + "." for line in lines
                    if any(p in line for p in patterns))


def _every(lines: list[str], patterns: tuple[str, ...]) -> str:
    """Each line that matches, in order: through a gateway, the hop's own failure comes
    before the closed connection that the ssh in front of it reports."""
    matching = [line.strip() for line in lines if any(p in line for p in patterns)]
    return "; ".join(dict.fromkeys(matching))


def _causes(lines: list[str]) -> str:
    """What ssh said before its failure that explains it (CAUSES), as " (...)"; or ""."""
    causes = _every(lines, CAUSES)
    return f" ({causes})" if causes else ""


def _last(lines: list[str], patterns: tuple[str, ...]) -> str:
    for line in reversed(lines):
        if any(p in line for p in patterns):
            return line.strip()
    return lines[-1].strip() if lines else "unknown reason"
