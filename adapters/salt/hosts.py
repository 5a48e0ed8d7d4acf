"""Which salt-ssh hosts use the transport, and their transport contexts.

A host opts in with the roster key `transport: fast` (or a table
`{kind: fast, python: /usr/bin/python3, backend: paramiko}`, whose python may be a
list of candidates, the first found running); the backend defaults to the OpenSSH
client, as stock salt-ssh uses, so ~/.ssh/config applies alike; python defaults to
the first of PYTHON_CANDIDATES found, looked up on the roster's set_path when it has
one, as the shim sets PATH to it first).
Its roster keys map onto the transport: user, port, priv (identity file;
"agent-forwarding" forwards the agent), timeout (ssh's ConnectTimeout, as stock's),
ssh_options ("Key=Value" strings), identities_only, keepalive settings,
passwd (the login password where keys are not enough, as stock's, and sudo's
password; never a command-line argument), priv_passwd (priv's passphrase),
sudo/sudo_user (a persistent sudo interpreter), set_path, minion_opts, cmd_umask,
thin_dir (used as by Salt) and remote_port_forwards (as ssh -R: the
roster user's interpreter listens on the loopback, as sshd does by default,
while the host's contexts are open; a port it cannot listen on is a
warning, as with ssh); so do the master's
host-key options (known_hosts_file, ignore_host_keys, no_host_keys) and --wipe (the thin_dir
after each call, the host's file cache at the end of the run). Keys whose
behaviour the adapter cannot give fail with an error naming the key.
salt-ssh runs each host in a process of its own; that process holds the
host's contexts (one Targets) until it ends.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

import transport
from adapters.targets import Targets
from transport.controller import DEFAULT_CONNECT_TIMEOUT

REFUSED_KEYS = {
    "winrm": "Windows targets",
    "ssh_pre_flight": "pre-flight scripts",
    "ssh_pre_hook": "pre-hook scripts",
    "tty": "a terminal for the remote command",
    "relenv": "relenv deployments",
}
TABLE_KEYS = {"kind", "python", "backend"}
# Where a fast host looks for Python when its roster entry names none: the first found
# runs, as stock salt-ssh's shim looks (the Python 2 names left out: Salt 3006+ needs 3).
PYTHON_CANDIDATES = ["python3", "python", "/usr/libexec/platform-python"]


class RosterError(ValueError):
    """A roster entry selects the transport but asks for something it cannot do."""


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteForward:
    """One `-R [bind_address:]port:host:hostport` entry of remote_port_forwards."""
    bind_address: str
    port: int
    host: str
    host_port: int


@dataclass(frozen=True)
class Settings:
    python: str | list[str]
    backend: str  # openssh or paramiko
    remote_forwards: tuple[RemoteForward, ...] = ()


# The forwards opened on each login context (a context is opened once per process).
_forwards: dict[transport.Context, list] = {}
_forwards_lock = threading.Lock()


def selects_transport(target: dict[str, Any]) -> bool:
    """Whether a roster entry (a Single's target dict) asks for the transport at all."""
    return target.get("transport") not in (None, False, "", "ssh", "stock")


def settings_for(target: dict[str, Any]) -> Settings | None:
    """The transport settings of a Single's target dict, or None when it does not opt in."""
    if not selects_transport(target):
        return None
    value = target.get("transport")
    host = target.get("host")
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict) or value.get("kind") != "fast":
        given = target.get("transport")
        given = dict(given) if isinstance(given, dict) else given  # Salt's OrderedDict, plainly
        raise RosterError(f"{host}: roster key transport must be 'fast' or "
                          f"{{kind: fast, python: ...}}, not {given!r}")
    unknown = sorted(set(value) - TABLE_KEYS)
    if unknown:
        raise RosterError(f"{host}: roster key transport.{unknown[0]} is not supported "
                          f"(supported: {', '.join(sorted(TABLE_KEYS))})")
    for key, why in REFUSED_KEYS.items():
        if target.get(key):
            raise RosterError(f"{host}: roster key {key} is not supported with transport: fast "
                              f"({why})")
    umask_of(target.get("cmd_umask"))  # a bad value fails here, naming the key
    backend = value.get("backend")
    if backend not in (None, "openssh", "paramiko"):
        raise RosterError(f"{host}: roster key transport.backend must be openssh or paramiko, "
                          f"not {backend!r}")
    python = value.get("python") or PYTHON_CANDIDATES
    if isinstance(python, (list, tuple)):  # candidates: the first found runs
        if not python or not all(isinstance(p, str) and p for p in python):
            raise RosterError(f"{host}: roster key transport.python is an interpreter or a list "
                              f"of them, not {list(python)!r}")
        python = list(python)
    else:
        python = str(python)
    return Settings(python=python, backend=backend or "openssh",
                    remote_forwards=remote_forwards_of(target))


def remote_forwards_of(target: dict[str, Any]) -> tuple[RemoteForward, ...]:
    """The roster's (or --remote-port-forwards') comma-separated ssh -R entries."""
    value = target.get("remote_port_forwards")
    if not value:
        return ()
    forwards = []
    for entry in filter(None, (item.strip() for item in str(value).split(","))):
        fields = [field.strip() for field in _forward_fields(entry)]
        if len(fields) == 3:
            fields.insert(0, "")
        if (len(fields) != 4 or not fields[2]
                or not all(PORT.fullmatch(port) for port in (fields[1], fields[3]))
                or int(fields[1]) > 65535 or not 0 < int(fields[3]) <= 65535):
            raise RosterError(f"{target.get('host')}: roster key remote_port_forwards entry "
                              f"{entry!r} is not [bind_address:]port:host:hostport "
                              "(the forms with sockets and dynamic forwards are not "
                              "supported with transport: fast)")
        forwards.append(RemoteForward(fields[0], int(fields[1]), fields[2], int(fields[3])))
    return tuple(forwards)


PORT = re.compile(r"[0-9]{1,5}")


def _forward_fields(entry: str) -> list[str]:
    """Split an ssh forward spec at colons outside [brackets] (IPv6 addresses)."""
    fields, current, depth = [], "", 0
    for char in entry:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == ":" and depth == 0:
            fields.append(current)
            current = ""
            continue
        current += char
    fields.append(current)
    return [field[1:-1] if field.startswith("[") and field.endswith("]") else field
            for field in fields]


def _listen_address(forward: RemoteForward, host: Any) -> str:
    """Where the target listens: the loopback, as sshd listens for ssh -R unless its
    GatewayPorts (no by default) allows more; a loopback address given is kept."""
    address = forward.bind_address
    if address == "localhost":
        return address
    try:
        if address and ipaddress.ip_address(address).is_loopback:
            return address
    except ValueError:
        pass
    if address:
        log.warning("%s: remote forward of port %d listens on the loopback only, as sshd "
                    "does by default, not on %s", host, forward.port, address)
    return "127.0.0.1"


def _open_remote_forwards(context: transport.Context, target: dict[str, Any],
                          forwards: tuple[RemoteForward, ...]) -> None:
    """Have the login context listen for each forward, once per context, as ssh -R
    would for the session (a port that cannot be forwarded is a warning, as there)."""
    host = target.get("host")
    with _forwards_lock:  # held only to claim the context: the calls are made outside it
        if not forwards or context in _forwards:
            return
        opened = _forwards[context] = []
    for forward in forwards:
        try:
            opened.append(context.forward_remote(
                forward.port, forward.host_port, remote_host=_listen_address(forward, host),
                local_host=forward.host))
        except Exception as e:  # noqa: BLE001 (as ssh: the session goes on without it)
            log.warning("%s: remote port forwarding failed for listen port %d: %s",
                        host, forward.port, e)
            continue
        if forward.port == 0:  # as ssh says which port it got
            log.warning("%s: allocated port %d for remote forward to %s:%d", host,
                        opened[-1].port, forward.host, forward.host_port)


def forget_remote_forwards() -> None:
    """Drop this process's record of forwards: its contexts are closing (the forwards
    go with them), or it is a forked child, where they are the parent's (and the lock
    may have been held at the fork)."""
    global _forwards_lock
    _forwards_lock = threading.Lock()
    _forwards.clear()


def umask_of(value: Any) -> int | None:
    """The roster's cmd_umask as a number: an int, or octal text ("077", "0o077")."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text, 0) if text.lower().startswith("0o") else int(text, 8)
    except ValueError:
        raise RosterError(f"roster key cmd_umask must be an octal number, not {value!r}") from None


def _ssh_options(target: dict[str, Any], opts: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    options: dict[str, str] = {}
    for item in list(opts.get("ssh_options") or []) + list(target.get("ssh_options") or []):
        # As ssh -o takes them: Key=Value, or Key Value.
        key, value = (re.split(r"\s*=\s*|\s+", str(item).strip(), maxsplit=1) + [""])[:2]
        if not (key and value):
            raise RosterError(f"{target.get('host')}: ssh_options entry {item!r} is not "
                              "Key=Value (nor Key Value)")
        options[key] = value
    if target.get("identities_only") or opts.get("ssh_identities_only"):
        options["IdentitiesOnly"] = "yes"
    if target.get("keepalive", opts.get("ssh_keepalive", True)):
        options.setdefault("ServerAliveInterval", str(target.get("keepalive_interval")
                                                      or opts.get("ssh_keepalive_interval", 60)))
        options.setdefault("ServerAliveCountMax", str(target.get("keepalive_count_max")
                                                      or opts.get("ssh_keepalive_count_max", 3)))
    known_hosts = opts.get("known_hosts_file")
    if known_hosts and os.path.isfile(known_hosts):
        options.setdefault("UserKnownHostsFile", known_hosts)
    check_host_keys = None
    if opts.get("no_host_keys"):
        check_host_keys = "ignore"
        options["UserKnownHostsFile"] = "/dev/null"
    elif opts.get("ignore_host_keys"):
        options["StrictHostKeyChecking"] = "no"  # as stock: a new key is still recorded
    return options, check_host_keys


def login_context(targets: Targets, target: dict[str, Any], opts: dict[str, Any],
                  settings: Settings) -> transport.Context:
    """The host's context as the roster user (what salt-ssh's raw commands run as)."""
    ssh_options, check_host_keys = _ssh_options(target, opts)
    # The roster's timeout is ssh's connect timeout, as stock's; the interpreter's start
    # after the login has the usual time (at least), as stock's shim has no limit at all.
    timeout = float(target.get("timeout") or DEFAULT_CONNECT_TIMEOUT)
    ssh_options.setdefault("ConnectTimeout", str(max(1, int(timeout))))
    priv = target.get("priv")
    identity_file = None
    if priv == "agent-forwarding":
        ssh_options["ForwardAgent"] = "yes"
    elif priv and os.path.exists(os.path.expanduser(priv)):
        identity_file = os.path.expanduser(priv)
    elif priv:  # stock's ssh says so too, and goes on with the keys it has
        log.warning("transport: %s: the roster's priv key %s is not there: logging in without it",
                    target.get("host"), priv)
    context = targets.ssh(str(target["host"]), port=int(target["port"]) if target.get("port") else None,
                       user=target.get("user") or None, python=settings.python,
                       identity_file=identity_file, ssh_options=ssh_options,
                       check_host_keys=check_host_keys, backend=settings.backend,
                       connect_timeout=max(timeout, DEFAULT_CONNECT_TIMEOUT),
                       search_path=str(target["set_path"]) if target.get("set_path") else None,
                       password=target.get("passwd") or None,  # Targets makes them text
                       passphrase=target.get("priv_passwd") or None)
    _open_remote_forwards(context, target, settings.remote_forwards)
    return context


def open_context(targets: Targets, target: dict[str, Any], opts: dict[str, Any],
                 settings: Settings) -> transport.Context:
    """The host's context: ssh as the roster user, then sudo when the roster asks for it."""
    context = login_context(targets, target, opts, settings)
    if target.get("sudo"):
        context = targets.sudo(context, target.get("sudo_user") or "root", target.get("passwd") or None)
    return context
