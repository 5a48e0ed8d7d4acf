"""Router: the controller's entry point. It owns the broker thread and every context.

    with transport.Router() as router:
        ctx = router.local(python="/usr/bin/python3")
        ctx.call(os.getpid)

Leaving the with block (or close()) shuts every context down and stops the
broker thread.
"""

from __future__ import annotations

import itertools
import os
import sys
import time

from transport import log
from transport.bootstrap import build, byte_code_tag
from transport.context import Context, _Unwaited
from transport.core import codec, compat
from transport.core.broker import Broker
from transport.core.framing import DEFAULT_MAX_MESSAGE_SIZE, Message
from transport.core.handles import ADD_ROUTE, CONNECT, CONTROLLER_ID, FIRST_DYNAMIC_HANDLE, SHUTDOWN
from transport.core.router import NO_HANDLER, NO_ROUTE
from transport.core.router import Router as CoreRouter
from transport.core.spawn import (
    REAP_INTERVAL,
    REAP_PATIENCE,
    Connection,
    printable,
    reap_remaining,
)
from transport.errors import MAX_REASON, ConnectError, RemoteError, shown, shown_value
from transport.known_targets import remember_tag, remembered_tag
from transport.modules import ModuleServer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CONNECT_TIMEOUT = 30.0
# How much longer than connect_timeout the controller waits for a connect's outcome
# (the child's start enforces connect_timeout itself; this covers a stuck or distant loop).
ANSWER_MARGIN = 5.0
# Sent to every context with its first call (see _relay_stderr).
STDIO_MODULE = "transport.core.stdio"
# Refused messages logged as warnings per stream; the rest go to debug (no log floods).
DROP_WARNINGS = 20


def _target_key(method: Any, via: Context | None) -> str:
    """How the target is reached: the method, where, as whom, which Python, through what."""
    parts = [type(method).__name__, method.host, getattr(method, "user", None),
             getattr(method, "port", None), method.python, via.name if via else None]
    return " ".join(str(part) for part in parts)


def _valid_hello(info: Any) -> bool:
    """The hello of a booted core: pid, python and version, of the right types, text
    that is short and printable, and a byte-code tag that is none or a short word."""
    if not (isinstance(info, dict) and isinstance(info.get("pid"), int)
            and isinstance(info.get("python"), str) and isinstance(info.get("version"), str)):
        return False
    tag = info.get("byte_code_tag")
    return (len(info["python"]) <= 4096 and len(info["version"]) <= 64
            and shown(info["python"] + info["version"]) == info["python"] + info["version"]
            and (tag is None or (isinstance(tag, str) and tag.isalnum() and len(tag) <= 64)))


def _connect_answer(via: Context, reply: tuple) -> dict[str, Any]:
    """An intermediary's answer to CONNECT as _connect_via returns it: checked, its
    text made printable and short (it may be hostile)."""
    if len(reply) == 2 and reply[0] == "ok":
        return {"info": reply[1]}
    if len(reply) == 3 and reply[0] == "fail" and isinstance(reply[2], dict):
        details = {key: value for key, value in reply[2].items()
                   if (key in ("stderr", "preamble") and isinstance(value, str))
                   or (key in ("exit_status", "errno") and type(value) is int)
                   or (key == "auth" and isinstance(value, bool))}
        return {"error": (printable(str(reply[1]), MAX_REASON), details)}
    if len(reply) == 2 and reply[0] == "lost":
        return {"error": (f"failed on {via.name}: {printable(str(reply[1]), MAX_REASON)}", {})}
    return {"error": (f"failed on {via.name}: malformed answer {shown_value(reply)}", {})}


def _check_python(python: Any, method: str) -> None:
    """Refuse a python= that no method could run: a path or name, or a list of them
    (the first one found runs)."""
    if isinstance(python, (list, tuple)):
        if not python:
            raise ValueError(f"{method}(python=[]) names no interpreter")
        if not all(isinstance(p, str) and p for p in python):
            raise TypeError(f"{method}(python=[...]) holds interpreters' paths or names, not "
                            f"{shown_value(python)}")
    elif python is not None and not isinstance(python, str):
        raise TypeError(f"{method}(python=...) is an interpreter's path or name, or a list "
                        f"of them, not {shown_value(python)}")


class Router:
    """Starts contexts and routes their messages; use as a context manager.

    max_message_size bounds every message (bytes): a target that sends a larger
    one is disconnected as a protocol violation; a call whose arguments or
    result would be larger fails (ValueError here, RemoteError from there).
    forward_byte_code: send the modules a target imports from here as byte code
    too, where its Python has this one's byte-code tag (it then skips compiling
    them); False for targets behind slow links: with byte code a module list is
    about four times the bytes (jinja2: 0.47 MB against 0.12 MB).
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 forward_byte_code: bool = True) -> None:
        self.max_message_size = max_message_size
        self.forward_byte_code = forward_byte_code
        self._broker = Broker(name="transport-broker", on_error=self._on_broker_error)
        self._core = CoreRouter(self._broker, CONTROLLER_ID, on_drop=self._on_drop)
        self._core.on_context_lost.append(self._on_context_lost)
        self._modules = ModuleServer(self._core, max_message_size)
        self._ids = itertools.count(1)
        self._lock = compat.allocate_lock()
        self._contexts: dict[int, Context] = {}
        self._connections: dict[int, Connection] = {}
        # The contexts being connected, with the reason of a loss reported meanwhile.
        self._lost_early: dict[int, str | None] = {}
        self._drops: dict[int | None, int] = {}  # refused messages per child stream
        self._starting: set[Any] = set()  # methods connecting on a caller's thread (paramiko)
        self._closed = False
        self._closing = False  # close() was called
        self._close_done = compat.Event()
        self._broker.add_shutdown_hook(self._on_broker_end)
        self._broker.start()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether close() was called (or the router's thread ended): its contexts are
        gone, or going, by our own doing."""
        return self._closed

    # -- connection methods ------------------------------------------------------

    def local(self, *, python: str | list[str] | None = None, name: str | None = None,
              connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, via: Context | None = None) -> Context:
        """Start a Python interpreter on this machine (default: sys.executable), or on via's.

        python: a path or name, or a list of them: the first found (at that path, or on
        the PATH) runs, and ctx.python says which.
        """
        _check_python(python, "local")
        from transport.methods.local import LocalMethod  # each method's module on first use

        method = LocalMethod(python or (via.python if via else sys.executable))
        return self._connect(method, name, connect_timeout, via)

    def ssh(self, host: str, *, port: int | None = None, user: str | None = None,
            python: str | list[str] = "python3",
            identity_file: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None,
            ssh_options: dict[str, str] | None = None, check_host_keys: str | None = None,
            compression: bool = False, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
            name: str | None = None, via: Context | None = None,
            backend: str = "openssh", search_path: str | None = None,
            password: str | None = None, passphrase: str | None = None) -> Context:
        """Start `python` on `host` over OpenSSH; with via=, the ssh client runs on that context.

        host may be user@host, as for ssh.
        check_host_keys: None follows the user's ssh config (for backend="paramiko",
        which reads no ssh config: strict checking against ~/.ssh/known_hosts);
        "accept-new", "ignore" or "strict" override it. compression: ssh compression (off by default).
        identity_file: a key file, or a list of them tried in order. python: a path or
        name, or a list of them: the first the host finds runs (ctx.python says which).
        search_path: the PATH python is looked for on instead of the login shell's, and
        the one it starts with ($NAME, ${NAME} and a leading ~ are expanded there).
        backend="paramiko" connects in-process instead (for large fan-outs; controller only).
        password: the login password, where keys are not enough (tried after them, once;
        it goes to ssh's prompt, never into an argument, the environment or a message).
        passphrase: what decrypts the identity files (or ssh's default keys) that no
        agent holds, given the same way.
        Raises AuthError when authentication is refused, ConnectError otherwise.
        """
        if backend not in ("openssh", "paramiko"):
            raise ValueError(f"backend must be 'openssh' or 'paramiko', not {backend!r}")
        if backend == "paramiko" and via is not None:
            raise ValueError("the paramiko backend connects from the controller only (no via=)")
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a host name or address, not {host!r}")
        login, at, address = host.rpartition("@")
        if at:  # user@host, as ssh takes it (and paramiko does not)
            if not login or not address:
                raise ValueError(f"{host!r} is not [user@]host")
            if user is not None and user != login:
                raise ValueError(f"two users for {host!r}: {user!r} (user=) and {login!r}")
            host, user = address, login
        name_part, colon, port_part = host.rpartition(":")
        if colon and ":" not in name_part and port_part.isdigit():  # not an IPv6 address
            # ssh would look "web1:2222" up as a host name (Group and the CLI take it).
            raise ValueError(f"{host!r}: give the port as port={port_part}")
        if port is not None and (type(port) is not int or not 0 < port < 65536):
            raise ValueError(f"port must be a number from 1 to 65535, not {port!r}")
        _check_python(python, "ssh")
        from transport.methods.ssh import SshMethod

        kind: type[SshMethod] = SshMethod
        if backend == "paramiko":
            from transport.methods.paramiko_ssh import ParamikoSshMethod  # socket etc.: on use

            kind = ParamikoSshMethod
        method = kind(host, port=port, user=user, python=python or "python3",
                      identity_file=identity_file,
                      ssh_options=ssh_options, check_host_keys=check_host_keys,
                      compression=compression, connect_timeout=connect_timeout,
                      search_path=search_path, password=password, passphrase=passphrase)
        return self._connect(method, name, connect_timeout, via)

    def sudo(self, *, user: str = "root", password: str | None = None,
             python: str | list[str] | None = None,
             connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, name: str | None = None,
             via: Context | None = None) -> Context:
        """Start `python` as `user` with sudo, here or on via's host.

        python defaults to via's interpreter (or this one); a list of candidates runs the
        first one found on sudo's PATH (or at that path). Without a password sudo
        must not need one; a wrong or missing password raises AuthError at once.
        """
        _check_python(python, "sudo")
        from transport.methods.sudo import SudoMethod

        method = SudoMethod(user, password=password,
                            python=python or (via.python if via else sys.executable))
        if via is not None:
            method.host = via.host
        return self._connect(method, name, connect_timeout, via)

    def su(self, *, user: str = "root", password: str | None = None,
           python: str | list[str] | None = None,
           connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, name: str | None = None,
           via: Context | None = None) -> Context:
        """Start `python` as `user` with su, here or on via's host.

        python defaults to via's interpreter (or this one), which `user` must be able
        to run; a list of candidates runs the first one `user`'s login shell finds. A
        wrong or missing password raises AuthError at once.
        """
        _check_python(python, "su")
        from transport.methods.su import SuMethod

        method = SuMethod(user, password=password,
                          python=python or (via.python if via else sys.executable))
        if via is not None:
            method.host = via.host
        return self._connect(method, name, connect_timeout, via)

    def _connect(self, method: Any, name: str | None, connect_timeout: float,
                 via: Context | None = None, pipe_size: int | None = None) -> Context:
        if not isinstance(connect_timeout, (int, float)) or isinstance(connect_timeout, bool):
            raise TypeError(f"connect_timeout is a number of seconds, not "
                            f"{type(connect_timeout).__name__}")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout is a number of seconds above 0, not "
                             f"{connect_timeout!r}")
        name = name or (f"{via.name}/{method.default_name()}" if via else method.default_name())
        if self._closed:
            raise ConnectError(name, "the router is closed")
        if self._core.forked():
            raise ConnectError(name, "this process is a fork of the one that made the router, "
                                     "whose thread it does not have: make a Router here")
        if self._broker.in_broker_thread():
            raise ConnectError(name, "cannot connect from the router's own thread (a future's "
                                     "done-callback or a serve() function)")
        if via is not None and not via.alive:
            raise ConnectError(name, f"cannot connect through {via.name}: it is disconnected")
        # Byte code for a child running this very interpreter, or for a target that
        # had this interpreter's byte-code tag last time (the source follows if not).
        this_interpreter = via is None and getattr(method, "runs_this_interpreter", bool)()
        target_key = _target_key(method, via)
        known_tag = None if this_interpreter else remembered_tag(target_key)
        byte_code = this_interpreter or known_tag == byte_code_tag()
        bootstrap = build()
        payload, fallback = bootstrap.payloads(byte_code)
        context_id = next(self._ids)
        with self._lock:
            self._lost_early[context_id] = None
        try:
            options = method.options()
            if fallback is not None:
                options["fallback"] = fallback
            if pipe_size:
                options["pipe_size"] = pipe_size
            if hasattr(method, "start_process"):  # connects in-process (paramiko), here and now
                with self._lock:
                    self._starting.add(method)
                try:
                    if self._closed:
                        method.abandon()
                    options["process"] = method.start_process(bootstrap, name)
                finally:
                    with self._lock:
                        self._starting.discard(method)
            try:
                if via is None:
                    outcome = self._connect_here(context_id, method.argv(bootstrap), payload,
                                                 name, connect_timeout, options)
                else:
                    outcome = self._connect_via(via, context_id, method.argv(bootstrap), payload,
                                                name, connect_timeout, options)
            except BaseException:  # interrupted (Ctrl-C) while connecting: nobody will use it
                self._abandon(context_id)
                raise
            if "error" in outcome:
                with self._lock:
                    self._connections.pop(context_id, None)
                self._broker.defer(self._core.remove_route, context_id)
                raise method.connect_error(name, *outcome["error"])
            if not _valid_hello(outcome["info"]):
                self._abandon(context_id)
                raise ConnectError(name, "the target's hello is malformed (not this transport's core?)")
            tag = outcome["info"].get("byte_code_tag")
            if not this_interpreter and tag != known_tag:
                remember_tag(target_key, tag)
            context = Context(self, context_id, name, method.host, outcome["info"], via=via)
            if context.python_version.startswith("2."):
                self._modules.python2.add(context_id)
            if tag == byte_code_tag() and self.forward_byte_code:
                self._modules.byte_code.add(context_id)
            with self._lock:
                self._contexts[context_id] = context
                lost = self._lost_early.pop(context_id, None)
            if lost is not None:
                context._lost(lost)
            else:
                _relay_stderr(context)
            log.info("transport", "%s: connected, pid %d, Python %s", name, context.pid,
                     context.python_version)
            return context
        finally:
            with self._lock:
                self._lost_early.pop(context_id, None)

    def _connect_here(self, context_id: int, argv: list[str], payload: tuple[str, bytes],
                      name: str, connect_timeout: float, options: dict[str, Any]) -> dict[str, Any]:
        """Spawn and boot a child of the controller; return {'info': ...} or {'error': ...}."""
        config = {"context_id": context_id, "parent_id": CONTROLLER_ID,
                  "max_message_size": self.max_message_size, "name": name}
        outcome: dict[str, Any] = {}
        done = compat.Event()

        def on_ready(connection: Connection, info: dict[str, Any]) -> None:
            outcome["info"] = info
            done.set()

        def on_failed(connection: Connection, reason: str, details: dict[str, Any]) -> None:
            outcome["error"] = (reason, details)
            done.set()

        connection = Connection(self._core, context_id, argv, payload, config, connect_timeout,
                                name, on_ready, on_failed, self._on_stderr, options)
        with self._lock:
            # Closed since _connect looked: its broker may have ended, and with it the
            # aborting of connections (_on_broker_end), which this one would have missed.
            closed = self._closed
            if not closed:
                self._connections[context_id] = connection
        if closed:
            process = options.get("process")  # a paramiko session, logged in already
            if process is not None:
                process.kill()
            return {"error": ("the router is closed", {})}
        self._broker.defer(connection.start)
        if not done.wait(connect_timeout + ANSWER_MARGIN):
            if connection.process is not None:
                self._broker.defer(connection.process.kill)
            outcome["error"] = (f"timed out after {connect_timeout}s", {})
        return outcome

    def _connect_via(self, via: Context, context_id: int, argv: list[str],
                     payload: tuple[str, bytes],
                     name: str, connect_timeout: float, options: dict[str, Any]) -> dict[str, Any]:
        """Ask `via` to spawn and boot the child; teach every hop above it the route."""
        path = []
        hop: Context | None = via
        while hop is not None:
            path.insert(0, hop)
            hop = hop.via
        for upper, lower in zip(path, path[1:]):
            self._core.send(Message(upper.context_id, CONTROLLER_ID, ADD_ROUTE,
                                    codec.encode((context_id, lower.context_id))))
        first_hop = self._core.route_for(path[0].context_id)
        if first_hop is None:
            return {"error": (f"cannot connect through {via.name}: it is disconnected", {})}
        # CONNECT runs on its broker thread, which has the module by then: a connect
        # through an intermediary busy with a long call need not wait for that call.
        via._send_modules_ahead(["transport.core.spawn"])
        self._core.add_route(context_id, first_hop)
        self._core.set_hops(context_id, [hop.context_id for hop in path])
        spec = {"context_id": context_id, "argv": argv, "payload": payload, "name": name,
                "connect_timeout": connect_timeout, "options": options,
                "max_message_size": self.max_message_size}

        def started_too_late(reply: tuple) -> None:
            # We said the connect failed, so nobody will use this child: it must not run on
            # (as root, say) until its intermediary ends. It has booted, so it reads messages.
            if reply and reply[0] == "ok":
                self._core.add_route(context_id, first_hop)  # removed when we gave up
                self._send_shutdown(context_id)

        answer = via._request(CONNECT, spec, timeout=connect_timeout + ANSWER_MARGIN,
                              late=started_too_late)
        return _connect_answer(via, answer)

    # -- events from the broker thread ---------------------------------------------

    def _on_context_lost(self, context_id: int, reason: str) -> None:
        # Shown in exceptions and logs: an intermediary (maybe compromised) wrote it.
        reason = printable(reason, MAX_REASON)
        self._drops.pop(context_id, None)
        with self._lock:
            context = self._contexts.pop(context_id, None)
            self._connections.pop(context_id, None)
            if context is None and context_id in self._lost_early:
                self._lost_early[context_id] = reason
        if context is not None:
            context._lost_as = reason
            reason = context._explained(reason)
            log.info("transport", "%s: disconnected: %s", context.name, reason)
            context._lost(reason)

    def _on_stderr(self, connection: Connection, line: str) -> None:
        # No escape sequence a target writes reaches the operator's terminal.
        # (ssh ends its lines with \r\n: the \r is part of the line end, not a '?')
        log.info("transport.stderr", "%s: %s", connection.name, shown(line.removesuffix("\r")))

    def _on_drop(self, msg: Message, reason: str) -> None:
        if reason.startswith(NO_ROUTE) or (reason.startswith(NO_HANDLER)
                                           and msg.handle >= FIRST_DYNAMIC_HANDLE):
            # Its context went away first (a shutdown, a module pushed unasked, a late
            # reply), or its handle did (a tunnel's data after it closed, a reply after
            # a timeout); a call's own loss reaches its caller as Disconnected.
            log.debug("transport", "dropped %r: %s", msg, reason)
            return
        self._log_refused(msg, f"dropped {msg!r}: {reason}")

    def _log_refused(self, msg: Message, text: str, exc_info: Any = None) -> None:
        """Log a message a target sent that was refused, or that its handler failed on:
        beyond DROP_WARNINGS of its stream's, at debug level (no log floods)."""
        child = self._core.child_on(msg.stream)  # broker thread only: no lock
        count = self._drops[child] = self._drops.get(child, 0) + 1
        if count > DROP_WARNINGS:
            log.debug("transport", "%s", text + (f": {exc_info[1]!r}" if exc_info else ""))
            return
        if exc_info:
            log.error("transport", "%s", text, exc_info=exc_info)
        else:
            log.warning("transport", "%s", text)
        if count == DROP_WARNINGS:
            log.warning("transport", "%r: later refused messages are logged at debug level",
                        msg.stream)

    def _on_broker_error(self, what: Any, exc_info: Any) -> None:
        if isinstance(what, Message) and what.stream is not None:  # one a target sent
            self._log_refused(what, f"error in the handler of {what!r}", exc_info)
        else:
            log.error("transport", "error in %r", what, exc_info=exc_info)

    def _abandon(self, context_id: int) -> None:
        """Drop a context that booted but must not be used: shut it down, forget its route."""
        self._send_shutdown(context_id)
        with self._lock:
            connection = self._connections.pop(context_id, None)
        if connection is not None:  # its process, once the broker has started it
            self._broker.defer(_kill_process_of, connection)
        self._broker.defer(self._core.remove_route, context_id)

    def _send_shutdown(self, context_id: int) -> None:
        """Ask a context to exit after its current call; its end is then no loss to explain."""
        self._core.exiting.add(context_id)
        self._core.send(Message(context_id, CONTROLLER_ID, SHUTDOWN))

    def _on_broker_end(self) -> None:
        """The broker's loop has ended (closed, or failed): fail everything still waiting."""
        self._closed = True
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            connection.abort("the router is closed")  # those still booting
        self._core.disconnect_children("the router is closed")
        reap_remaining(self._broker, REAP_PATIENCE)  # the loop's timers no longer run

    def _hang_up(self, context: Context) -> Any:
        """Close the connection of a context that did not exit when asked to. At end of
        file it hangs up on its running commands and leaves, as on losing its parent
        (a kill would leave their process groups behind); spawn's reaper kills its
        process if it lingers. Returns that process (None for a context reached
        through another, which leaves with its parent)."""
        connection = self._connections.get(context.context_id)
        if connection is None or connection.process is None or connection.stream is None:
            return None
        self._broker.defer(connection.stream.disconnect, "hung up: it did not exit when asked to")
        return connection.process

    # -- ending ------------------------------------------------------------------------

    def contexts(self) -> list[Context]:
        """The contexts that are connected now."""
        with self._lock:
            return list(self._contexts.values())

    def close(self, timeout: float = 5.0) -> None:
        """Shut every context down, then stop the broker.

        Contexts get timeout seconds in all to exit, each before the one it is reached
        through; those still there (a command still running, say) are hung up on
        together, and their processes are killed if they are still there REAP_PATIENCE
        (2 s) later; then every connection is closed. A close() while another thread's
        is under way returns when that one does.
        """
        if self._core.forked():
            self._closed = True
            return  # the contexts and the broker are the parent process's to close
        with self._lock:
            closing, self._closing = self._closing, True
        if closing:
            if not self._broker.in_broker_thread():
                self._close_done.wait()
            return
        try:
            self._close(timeout)
        finally:
            self._close_done.set()

    def _close(self, timeout: float) -> None:
        if self._closed:
            return  # the broker's thread ended (failed): it failed everything then
        self._closed = True
        with self._lock:
            starting = list(self._starting)
        for method in starting:  # (a Group's threads, say, which the interpreter waits for)
            method.abandon()
        # Contexts first, then the intermediaries they are reached through: one told to
        # exit takes the contexts behind it along at once, cutting their calls short.
        deadline = compat.monotonic() + timeout
        remaining, stuck = self.contexts(), []
        while remaining:
            intermediaries = {context.via for context in remaining}
            last = [context for context in remaining if context not in intermediaries]
            for context in last:
                context.shutdown(wait=False)
            stuck += _wait_gone(last, max(0.0, deadline - compat.monotonic()))
            remaining = [context for context in remaining if context in intermediaries]
        _wait_exited([p for p in map(self._hang_up, stuck) if p is not None],
                     REAP_PATIENCE + 1.0)
        self._broker.shutdown()


def _relay_stderr(context: Context) -> None:
    """Keep the context's own stderr from the processes its calls start (see
    transport.core.stdio): sent with its first call, not waited for."""

    def failed(error: BaseException) -> None:
        if isinstance(error, RemoteError):  # not a loss, which says why elsewhere
            log.warning("transport", "%s: its stderr is not relayed: %s", context.name,
                        error.remote_message)

    context._push_core_module(STDIO_MODULE)
    context._start_reference(_Unwaited(failed), (STDIO_MODULE, "relay_stderr"), (), {},
                             flush=False)


def _kill_process_of(connection: Connection) -> None:
    """Broker thread: kill a connection's process, if it has one by now."""
    if connection.process is not None:
        connection.process.kill()


def _wait_exited(processes: list[Any], timeout: float) -> None:
    """Wait until the broker has reaped each process (its reaper kills one that lingers)
    or timeout passes; kill those left."""
    deadline = compat.monotonic() + timeout
    while any(p.status is None for p in processes) and compat.monotonic() < deadline:
        time.sleep(REAP_INTERVAL)
    for process in processes:
        if process.status is None:
            process.kill()


def _wait_gone(contexts: list[Context], timeout: float) -> list[Context]:
    """Wait until every context is gone or timeout passes; return those still there."""
    deadline = compat.monotonic() + timeout
    for context in contexts:
        context._gone.wait(max(0.0, deadline - compat.monotonic()))
    return [context for context in contexts if context.alive]
