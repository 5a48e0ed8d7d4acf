"""The transport contexts an adapter's run shares: one per target, opened on first use.

A Targets object owns a Router and keys each context by how it was reached
(host, port, user, interpreter; then sudo user on top), so every task of a
run that names the same host reuses one interpreter. close() shuts them all
down; the process-wide instance from shared_targets() is also closed at exit.
A process forked from the one that opened them (salt-ssh forks one per host)
opens contexts of its own.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import os
import pwd
import sys
import threading
import weakref
from typing import Any

import transport
from transport import log
from transport.group import parse_host

# What a sudo refusal says when the password given was wrong (the sudo method's words,
# and sudo's own).
PASSWORD_REFUSED = ("the password was refused", "incorrect password attempt", "Sorry, try again",
                    "Authentication failure")


class Targets:
    """Lazily opened transport contexts, keyed by how each was reached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._router: transport.Router | None = None
        self._contexts: dict[tuple, transport.Context] = {}
        self._opening: dict[tuple, threading.Lock] = {}
        self._sudo_refused: set[tuple[int, str]] = set()  # (via's context id, user)
        self._sudo_deciding: dict[tuple[int, str], threading.Lock] = {}
        # The objects (Fabric Connections) using each context, by its id (see retire()),
        # each by its own id: Connections to one host compare equal.
        self._holders: dict[int, weakref.WeakValueDictionary] = {}
        self._pid = os.getpid()

    @property
    def router(self) -> transport.Router:
        with self._lock:
            self._start_over_in_a_fork()
            if self._router is None:
                self._router = transport.Router()
            return self._router

    def _start_over_in_a_fork(self) -> None:
        """In a process forked from the one that opened them (lock held), the contexts
        are the parent's: forget them, and open new ones from here."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._forget_contexts()

    def _forget_contexts(self) -> None:
        """Forget the router and what was opened with it (lock held)."""
        self._router = None
        self._contexts.clear()
        self._opening.clear()
        self._sudo_refused.clear()
        self._sudo_deciding.clear()
        self._holders.clear()

    def _get(self, key: tuple, open_context: Any) -> transport.Context:
        with self._lock:
            self._start_over_in_a_fork()
            ctx = self._contexts.get(key)
            if ctx is not None and ctx.alive:
                return ctx
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:  # one connection per key, even when threads ask at once
            with self._lock:
                ctx = self._contexts.get(key)
                if ctx is not None and ctx.alive:
                    return ctx
            ctx = open_context()
            with self._lock:
                self._contexts[key] = ctx
            return ctx

    def local(self, python: str | list[str] | None = None) -> transport.Context:
        python = python or sys.executable
        return self._get(("local", repr(python)), lambda: self.router.local(python=python))

    def ssh(self, host: str, *, port: int | None = None, user: str | None = None,
            python: str | list[str] = "python3", backend: str = "openssh",
            **options: Any) -> transport.Context:
        """A context on host over ssh; options go to Router.ssh (identity_file, ssh_options ...).

        backend "auto": paramiko (in-process, as Fabric connects) unless the ssh options
        need the OpenSSH client.
        """
        if backend == "auto":
            from transport.methods.paramiko_ssh import HONOURED

            backend = "paramiko" if set(options.get("ssh_options") or {}) <= HONOURED else "openssh"
        options["backend"] = backend
        for secret in SECRETS:
            if options.get(secret) is not None and not isinstance(options[secret], str):
                options[secret] = str(options[secret])  # YAML's `password: 1234`
        key = ("ssh", host, port, user, repr(python),
               tuple(sorted((k, _fingerprint(v) if k in SECRETS else repr(v))
                            for k, v in options.items())))
        return self._get(key, lambda: self.router.ssh(host, port=port, user=user, python=python,
                                                      **options))

    def sudo(self, via: transport.Context, user: str = "root",
             password: str | None = None) -> transport.Context:
        """A context running as user with sudo on via's host: one per host, user and
        password, so sudo judges each password given, as it would each stock command.
        A password a config gives as a number (YAML's `password: 1234`) is its text, and
        one with a line end is its first line, as stock Fabric and salt-ssh write it to
        sudo, which reads a line."""
        if password is not None:  # a YAML block's or a file's own line end is not the password's
            password = str(password).partition("\n")[0]
        return self._get(("sudo", via.context_id, user, _fingerprint(password)),
                         lambda: self.router.sudo(via=via, user=user, password=password))

    def sudo_if_allowed(self, via: transport.Context, user: str = "root",
                        password: str | None = None) -> transport.Context | None:
        """As sudo(), or None where sudo will not start an interpreter as user: a rule
        for some commands only, a user not in sudoers, a password wanted and none given,
        requiretty, or any other cause (an unknown user, no Python for that user, a
        timeout). The adapter then runs each command under sudo as stock Fabric and
        invoke do, and sudo judges it as it would there (a warning says so once, since
        only the first command of `cd x && y` then runs as user, as with stock). A
        refused password is still the AuthError (trying it again would count twice
        against the account). Once refused, a host and user are not asked again in
        this run, even by threads asking at the same time."""
        key = (via.context_id, user)
        with self._lock:
            self._start_over_in_a_fork()
            deciding = self._sudo_deciding.setdefault(key, threading.Lock())
        with deciding:
            if key in self._sudo_refused:
                return None
            try:
                return self.sudo(via, user, password)
            except transport.ConnectError as e:
                if any(text in e.reason for text in PASSWORD_REFUSED):
                    raise
                reason = e.reason
            self._sudo_refused.add(key)
        log.warning("transport", "%s: sudo will not start an interpreter as %s (%s): each "
                    "command runs under sudo, as stock Fabric and invoke run it", via.name,
                    user, reason)
        return None

    def hold(self, context: transport.Context, holder: Any) -> None:
        """holder (a Connection) uses context until it retires it."""
        with self._lock:
            self._holders.setdefault(context.context_id,
                                     weakref.WeakValueDictionary())[id(holder)] = holder

    def retire(self, context: transport.Context, holder: Any) -> None:
        """holder is done with context: the next use of its host logs in again (as a
        closed connection's next command does: a group the user was added to, or a new
        login shell, then shows). The context, with the sudo interpreters opened
        through it, is shut down now if nothing else holds it, else when the run ends."""
        with self._lock:
            holders = self._holders.get(context.context_id)
            if holders is not None:
                holders.pop(id(holder), None)
            for key in [key for key, ctx in self._contexts.items() if ctx is context]:
                del self._contexts[key]
            if holders:
                return
            self._holders.pop(context.context_id, None)
            retired = [key for key in self._contexts
                       if key[0] == "sudo" and key[1] == context.context_id]
            contexts = [self._contexts.pop(key) for key in retired] + [context]
            for key in [key for key in self._sudo_refused if key[0] == context.context_id]:
                self._sudo_refused.discard(key)
        for ctx in contexts:  # sudo's first
            ctx.shutdown(wait=False)

    def for_spec(self, spec: str, python: str | list[str] | None = None,
                 **options: Any) -> transport.Context:
        """'local' or '[user@]host[:port]' -> its context."""
        if spec == "local":
            return self.local(python)
        user, host, port = parse_host(spec)
        return self.ssh(host, port=port, user=user, python=python or "python3", **options)

    def close(self) -> None:
        """Shut every context down and close the router; later use opens new ones."""
        with self._lock:
            self._start_over_in_a_fork()
            router = self._router
            self._forget_contexts()
        if router is not None:
            router.close()


_FINGERPRINT_KEY = os.urandom(32)
# Router.ssh's arguments that a key holds only as fingerprints.
SECRETS = ("password", "passphrase")


def _fingerprint(password: str | bytes | None) -> bytes | None:
    """What tells passwords apart in a key without keeping them there (a keyed hash,
    its key this process's own)."""
    if password is None:
        return None
    if isinstance(password, str):
        password = password.encode("utf-8", "surrogateescape")
    return hmac.new(_FINGERPRINT_KEY, password, hashlib.sha256).digest()


_shared: Targets | None = None
_shared_lock = threading.Lock()


def shared_targets() -> Targets:
    """The process-wide Targets, closed when the process exits."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Targets()
            atexit.register(_shared.close)
        return _shared


_login_shells: weakref.WeakKeyDictionary[transport.Context, str] = weakref.WeakKeyDictionary()


def login_shell(context: transport.Context) -> str:
    """The login shell of the user the context runs as: what sshd runs a command line
    with (asked once per interpreter, however many tasks or hosts' runs use it)."""
    shell = _login_shells.get(context)
    if shell is None:
        entry = context.call(pwd.getpwuid, context.call(os.getuid))
        shell = _login_shells[context] = entry[6] or "/bin/sh"
    return shell
