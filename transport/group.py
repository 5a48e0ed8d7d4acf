"""Group: many hosts at once, with one result per host.

    group = Group(router, ["web1", "deploy@web2:2222"], backend="paramiko")

Connections are made in parallel (at most `concurrency` at a time), and so
are calls, commands and transfers. A host that fails to connect, or whose
task fails, carries its error in its HostResult; it never stops the others.
With via=, every host is reached through that context (a bastion), so the
controller holds one connection and the bastion the rest.
"""

from __future__ import annotations

import os
import threading
import time

from transport.commands import CommandResult
from transport.errors import TransportError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Callable

    from transport.context import Context
    from transport.controller import Router


class HostResult:
    """One host's outcome: .value when .ok, else .error (the exception); .seconds: how long
    it took, connecting included where the host was connected for it."""

    def __init__(self, host: str, value: Any = None, error: BaseException | None = None,
                 seconds: float = 0.0) -> None:
        self.host = host
        self.value = value
        self.error = error
        self.seconds = seconds

    @property
    def ok(self) -> bool:
        if self.error is not None:
            return False
        # Only a command's status counts: a value a call returned may have any attribute.
        return not isinstance(self.value, CommandResult) or self.value.exit_code == 0

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"failed: {self.error or self.value}"
        return f"<HostResult {self.host} {state}>"


class GroupResult(dict):
    """host -> HostResult, in the order the hosts were given."""

    @property
    def succeeded(self) -> dict[str, HostResult]:
        return {host: r for host, r in self.items() if r.ok}

    @property
    def failed(self) -> dict[str, HostResult]:
        return {host: r for host, r in self.items() if not r.ok}


def parse_host(spec: str) -> tuple[str | None, str, int | None]:
    """'[user@]host[:port]' (IPv6 as [addr]:port) -> (user, host, port); a ValueError
    says what is wrong with any other text."""
    if not spec or any(c.isspace() for c in spec):
        raise ValueError(f"{spec!r} is not [user@]host[:port]: it has a space in it"
                         if spec else "an empty host")
    user, at, rest = spec.rpartition("@")
    if at and not user:
        raise ValueError(f"{spec!r}: the user before @ is empty")
    port_text = None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail:
            if not tail.startswith(":"):
                raise ValueError(f"{spec!r} is not [user@]host[:port]")
            port_text = tail[1:]
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host = rest
    if not host:
        raise ValueError(f"no host in {spec!r}")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{spec!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    return user or None, host, port


class Group:
    """Contexts on many hosts, used together. Connect with connect() (or on first use)."""

    def __init__(self, router: Router, hosts: Iterable[str] | str, *, user: str | None = None,
                 port: int | None = None, python: str | list[str] = "python3",
                 via: Context | None = None,
                 sudo: bool = False, sudo_user: str = "root", sudo_password: str | None = None,
                 concurrency: int = 32, connect_timeout: float = 30.0,
                 **ssh_kwargs: Any) -> None:
        self.router = router
        if isinstance(hosts, str):  # "web1,web2" as the CLI's -H takes it, not its letters
            hosts = [host.strip() for host in hosts.split(",") if host.strip()]
        self.hosts = list(dict.fromkeys(hosts))
        for spec in self.hosts:  # a bad one is named now, before any host is reached
            if not isinstance(spec, str):
                raise TypeError(f"hosts are '[user@]host[:port]' strings, not {spec!r}")
            parse_host(spec)
        self.user = user
        self.port = port
        self.python = python
        self.via = via
        self.sudo = sudo
        self.sudo_user = sudo_user
        self._sudo_password = sudo_password
        self.concurrency = max(1, concurrency)
        self.connect_timeout = connect_timeout
        self.ssh_kwargs = ssh_kwargs  # more Router.ssh keywords: ssh_options, backend, password ...
        self.contexts: dict[str, Context] = {}
        self.errors: dict[str, BaseException] = {}
        self._reaching = {host: threading.Lock() for host in self.hosts}  # each host once
        # Called with each HostResult as it completes (from worker threads): progress display.
        self.on_result: Callable[[HostResult], Any] | None = None

    def __repr__(self) -> str:
        return f"<Group {len(self.hosts)} hosts, {len(self.contexts)} connected>"

    def _connect_one(self, spec: str) -> Context:
        user, host, port = parse_host(spec)
        ctx = self.router.ssh(host, user=user or self.user, port=port or self.port,
                              python=self.python, connect_timeout=self.connect_timeout,
                              name=spec, via=self.via, **self.ssh_kwargs)
        if self.sudo:
            lost = self.contexts.get(spec)  # a sudo context lost: the login under it goes too
            if lost is not None and lost.via is not None and lost.via.alive:
                lost.via.shutdown(wait=False)
            try:
                ctx = self.router.sudo(via=ctx, user=self.sudo_user,  # the login's Python
                                       password=self._sudo_password, python=ctx.python,
                                       connect_timeout=self.connect_timeout,
                                       name=f"{spec}/sudo:{self.sudo_user}")
            except BaseException:
                ctx.shutdown(wait=False)  # the next attempt logs in again
                raise
        return ctx

    def connect(self) -> GroupResult:
        """Connect every host not connected yet, or whose context was lost (its host
        rebooted, its interpreter was killed); returns host -> HostResult(value=Context)."""
        missing = [h for h in self.hosts if h not in self.contexts or not self.contexts[h].alive]
        results = self._each(missing, self._reach, connecting=True)
        return GroupResult((h, results.get(h) or HostResult(h, self.contexts[h]))
                           for h in self.hosts)

    def _reach(self, host: str) -> Context:
        """host's context, connecting it first if it is not connected yet, or was lost
        (recorded in contexts, or its error in errors)."""
        with self._reaching[host]:
            ctx = self.contexts.get(host)
            if ctx is not None and ctx.alive:
                return ctx
            try:
                ctx = self._connect_one(host)
            except Exception as e:
                self.errors[host] = e
                raise
            self.contexts[host] = ctx
            self.errors.pop(host, None)
            return ctx

    def _each(self, hosts: list[str], task: Callable[[str], Any],
              connecting: bool = False) -> GroupResult:
        def one(host: str) -> HostResult:
            started = time.monotonic()
            try:
                value = task(host)
            except Exception as e:  # this host's failure, whatever it is: the others go on
                result = HostResult(host, error=e, seconds=time.monotonic() - started)
            else:
                result = HostResult(host, value, seconds=time.monotonic() - started)
            if self.on_result is not None and not connecting:
                self.on_result(result)
            return result

        if not hosts:
            return GroupResult()
        if self.router._broker.in_broker_thread():  # its threads would wait on this one
            raise TransportError("a group cannot run on the router's own thread (in a future's "
                                 "done-callback or a serve() function): use another thread")
        from concurrent.futures import ThreadPoolExecutor  # a few ms to import: only when used

        pool = ThreadPoolExecutor(min(self.concurrency, len(hosts)),
                                  thread_name_prefix="transport-group")
        try:
            return GroupResult(zip(hosts, pool.map(one, hosts)))
        finally:
            # Interrupted (Ctrl-C), the caller must not wait here for the tasks still
            # running: it stops them (signal_commands, closing the router).
            pool.shutdown(wait=False, cancel_futures=True)

    def each(self, task: Callable[[Context], Any]) -> GroupResult:
        """task(context) on every host, in parallel; hosts that did not connect carry that error.

        Each host's task starts as soon as that host is connected (or at once, if it
        is): a slow or unreachable host delays no other. Interrupted (KeyboardInterrupt),
        it returns at once: tasks under way go on until the caller stops them
        (Context.signal_commands, or closing the router).
        """
        return self._each(self.hosts, lambda host: task(self._reach(host)))

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> GroupResult:
        """fn(*args, **kwargs) on every host."""
        return self.each(lambda ctx: ctx.call(fn, *args, **kwargs))

    def run(self, cmd: str | list[str], **kwargs: Any) -> GroupResult:
        """Context.run on every host; each HostResult.value is a CommandResult."""
        return self.each(lambda ctx: ctx.run(cmd, **kwargs))

    def put(self, local_path: str | os.PathLike[str], remote_path: str | os.PathLike[str],
            mode: int | None = None) -> GroupResult:
        """The same local file to every host."""
        return self.each(lambda ctx: ctx.put(local_path, remote_path, mode))

    def get(self, remote_path: str | os.PathLike[str],
            local_path: str | os.PathLike[str]) -> GroupResult:
        """remote_path from every host to local_path, in which "{host}" stands for each
        host (required with more than one host). Its directory must exist, as for scp."""
        from transport.files import path_argument

        local_path = path_argument(local_path, "local_path")
        if "{host}" not in local_path and len(self.hosts) > 1:
            raise ValueError('local_path must contain "{host}" to keep the hosts\' files apart')
        return self.each(lambda ctx: ctx.get(remote_path, local_path_for(local_path, self.host_of(ctx))))

    def host_of(self, ctx: Context) -> str:
        """The host (as given) whose task runs in ctx."""
        return login_name(ctx, self.sudo)


def login_name(ctx: Context, sudo: bool) -> str:
    """The name of the login a task's context belongs to: with sudo, ctx is the sudo
    context on top of that login (the CLI's and a Group's)."""
    return ctx.via.name if sudo and ctx.via is not None else ctx.name


def local_path_for(path: str, host: str) -> str:
    """path with each {host} replaced by the host's name as a file name ("/" and other
    characters file names should not have become "_"); other braces stay as they are."""
    return path.replace("{host}", "".join(c if c.isalnum() or c in "-_.@:" else "_"
                                          for c in host))
