"""Context: the caller's handle on one booted interpreter.

A call is one CALL_FUNCTION message written straight to the stream by the
calling thread, and one reply that the broker thread decodes and hands to
the waiting caller: a single thread hand-off per call. A synchronous call
waits on a bare lock; call_async() returns a concurrent.futures.Future
(imported on first use, as it costs a few milliseconds of start-up).
"""

from __future__ import annotations

import _thread
import os

from transport import log
from transport.bootstrap import CORE_DIR, ON_DEMAND
from transport.core import codec, compat
from transport.core.framing import Message
from transport.core.handles import (
    CALL_FUNCTION,
    CONTROLLER_ID,
    FIRST_DYNAMIC_HANDLE,
    FORWARD_MODULE,
    LOAD_MODULE,
    SIGNAL_COMMANDS,
)
from transport.core.preloading import unavailable
from transport.core.relaying import pack_entries
from transport.core.router import NO_ROUTE
from transport.core.spawn import printable
from transport.errors import (
    Disconnected,
    ProtocolError,
    RemoteError,
    Timeout,
    TransportError,
    shown,
    shown_value,
)
from transport.functions import function_reference
from transport.modules import is_stdlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from concurrent.futures import Future
    from os import PathLike
    from typing import Any, Callable

    from transport.commands import CommandResult, RunningCommand
    from transport.controller import Router
    from transport.tunnels import Forward


class _Reply:
    """A one-shot slot that the broker thread fills and one caller waits on.

    `context` is set by Context._start, whose reply handler is on_reply.
    """

    __slots__ = ("_lock", "value", "error", "context")

    def __init__(self) -> None:
        self._lock = compat.allocate_lock()
        self._lock.acquire()
        self.value: Any = None
        self.error: BaseException | None = None
        self.context: Context | None = None

    def on_reply(self, msg: Message) -> None:
        _settle(self.context, self, msg)

    def set_result(self, value: Any) -> None:
        self.value = value
        self._lock.release()

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self._lock.release()

    def result(self, timeout: float | None = None) -> Any:
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise _as_timeout(None, self.context, timeout)
        if self.error is not None:
            raise self.error
        return self.value


class _Unwaited:
    """The reply to a call nobody waits for (no concurrent.futures, as for _Reply):
    on_failure(error) is called if it fails."""

    __slots__ = ("context", "on_failure")

    def __init__(self, on_failure: Callable[[BaseException], Any]) -> None:
        self.context: Context | None = None
        self.on_failure = on_failure

    def on_reply(self, msg: Message) -> None:
        _settle(self.context, self, msg)

    def set_result(self, value: Any) -> None:
        pass

    def set_exception(self, error: BaseException) -> None:
        self.on_failure(error)


def _run_lost_callback(context: Context, callback: Callable[[], Any]) -> None:
    try:
        callback()
    except Exception:  # the other callbacks, and the loss's other work, go on
        log.error("transport", "%s: a callback on losing it failed", context.name,
                  exc_info=True)


def _as_timeout(error: BaseException | None, context: Context | None,
                timeout: float | None) -> Timeout:
    """A future's wait that ran out, as a Timeout naming the host."""
    if isinstance(error, Timeout):
        return error
    return Timeout(f"no reply within {timeout}s", context.name if context is not None else None)


# A call's payload encodes (module, qualname, args, kwargs); the part before args is
# the same for every call of a function, and is encoded once.
_call_heads: dict[tuple[str, str], bytes] = {}
_NO_ARGS = codec.encode(())
_NO_KWARGS = codec.encode({})
_ONE_TUPLE = len(codec.encode((None,))) - len(codec.encode(None))  # its tag and count
_core_sources: dict[str, bytes] = {}  # on-demand core modules sent without the finder


def _call_head(module: str, qualname: str) -> bytes:
    whole = codec.encode((module, qualname, None, None))
    return whole[:-2]  # less the two Nones, one byte each


def _encoded_within_the_call(value: tuple | dict) -> memoryview:
    """args or kwargs, encoded as they sit in the call's tuple: one level down, so a
    value nested too deep for the target is refused here."""
    return memoryview(codec.encode((value,)))[_ONE_TUPLE:]


class _FutureLock:
    """The lock a CallFuture waits on: what concurrent.futures uses of a threading.Condition.

    A threading.Condition is eight objects for the garbage collector to track
    (itself, its lock, a deque and five bound methods); pipelined calls make
    tens of thousands of futures, and collecting them cost a third of the
    controller's time per call. This is two, with the same behaviour for what
    concurrent.futures does with it: acquire/release, `with`, wait(timeout)
    and notify_all(), always with the lock held.
    """

    __slots__ = ("_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = _thread.RLock()
        self._waiters: list | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        waiter = _thread.allocate_lock()
        waiter.acquire()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        saved = self._lock._release_save()
        woken = False
        try:
            if timeout is None:
                woken = waiter.acquire()
            elif timeout > 0:
                woken = waiter.acquire(True, min(timeout, _thread.TIMEOUT_MAX))
            else:
                woken = waiter.acquire(False)
            return woken
        finally:
            self._lock._acquire_restore(saved)
            if not woken and self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)

    def notify_all(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            waiter.release()


_future_class: Any = None


def _new_future() -> Future:
    """A concurrent.futures.Future whose result() raises transport.Timeout on timeout."""
    global _future_class
    if _future_class is None:
        import concurrent.futures
        from concurrent.futures._base import FINISHED, RUNNING

        class CallFuture(concurrent.futures.Future):
            def __init__(self) -> None:
                # Future.__init__'s attributes, with the lighter lock (see _FutureLock).
                # The call is sent at once and cannot be called back: it starts as
                # running, so cancel() returns False.
                self._condition = _FutureLock()
                self._state = RUNNING
                self._result = None
                self._exception = None
                self._waiters: list = []
                self._done_callbacks: list = []
                self.context: Context | None = None  # set by Context._start

            def on_reply(self, msg: Message) -> None:
                _settle(self.context, self, msg)

            def _may_wait(self, timeout: float | None) -> None:
                if self._state != FINISHED and self.context is not None and timeout != 0:
                    self.context._refuse_to_wait_here()

            def result(self, timeout: float | None = None) -> Any:
                self._may_wait(timeout)
                try:
                    return super().result(timeout)
                except concurrent.futures.TimeoutError as e:
                    raise _as_timeout(e, self.context, timeout) from None

            def exception(self, timeout: float | None = None) -> BaseException | None:
                self._may_wait(timeout)
                try:
                    return super().exception(timeout)
                except concurrent.futures.TimeoutError as e:
                    raise _as_timeout(e, self.context, timeout) from None

        _future_class = CallFuture
    return _future_class()


# How many remote logger names forward_logging maps to loggers of their own, per context.
MAX_REMOTE_LOGGERS = 1000

# The longest exception type name (module and name) an error reply may carry.
MAX_TYPE_NAME = 500

# A successful call's reply is codec.encode(("ok", value)): this prefix, then the value.
_OK_HEAD = codec.encode(("ok", None))[:-1]


def is_handle(value: Any) -> bool:
    """Whether value can be a handle a target names for us to send to: a dynamic one,
    within the 32 bits of a message header."""
    return type(value) is int and FIRST_DYNAMIC_HANDLE <= value <= 0xFFFFFFFF


def reply_value(host: str, data: bytes) -> Any:
    """The value of the call reply data from host: ('ok', value) gives value, an
    ('err', ...) reply raises RemoteError, and anything else ProtocolError."""
    try:
        if data.startswith(_OK_HEAD):
            return codec.decode(data, len(_OK_HEAD))
        reply = codec.decode(data)
        if reply[0] == "ok":
            return reply[1]
        if reply[0] != "err":
            raise ValueError(f"a reply of kind {shown_value(reply[0])}")
    except Exception as e:  # any shape a target may send: the caller must not wait forever
        raise ProtocolError(f"{host}: malformed reply: {shown_value(e)}") from None
    raise remote_error(host, reply[1:])


def remote_error(host: str, fields: Any) -> RemoteError:
    """The RemoteError a target described as (type name, message, traceback text);
    ProtocolError if that is not what it sent."""
    if not (isinstance(fields, (tuple, list)) and len(fields) == 3
            and all(type(field) is str for field in fields) and len(fields[0]) <= MAX_TYPE_NAME):
        raise ProtocolError(f"{host}: malformed error reply: {shown_value(fields)}")
    from transport.hints import import_error_hint  # a target that failed: rare

    return RemoteError(host, *fields, hint=import_error_hint(fields[0], fields[1]))


def _settle(context: Context, future: Any, msg: Message) -> None:
    """Complete future with the call reply msg from context: its value or error."""
    if msg.is_dead:
        reason = msg.data.decode("utf-8", "replace")
        if reason.startswith(NO_ROUTE) and context.alive:
            # Sent as its connection ended: the loss, which waits to say why, follows.
            context._call_when_lost(lambda: future.set_exception(context._gone_error()))
            return
        future.set_exception(Disconnected(context.name, context._explained(reason)))
        return
    try:
        value = reply_value(context.name, msg.data)
    except RemoteError as e:
        if not e.hint:
            from transport import hints

            e.hint = hints.for_call(e.remote_type, e.remote_message, e.remote_traceback,
                                    context.python_version,
                                    frozenset(context._modules_pushed))  # callers add to it
        future.set_exception(e)
        return
    except ProtocolError as e:
        future.set_exception(e)
        return
    future.set_result(value)


class Job:
    """A detached call: .id to collect it later with Context.job(id), .pid of its process."""

    def __init__(self, context: Context, job_id: str, pid: int) -> None:
        self.context = context
        self.id = job_id
        self.pid = pid

    def __repr__(self) -> str:
        return f"<Job {self.id} on {self.context.name} pid={self.pid}>"

    def status(self) -> JobStatus:
        return self.context.job(self.id)


class JobStatus:
    """What a detached job's record says: state, result or error, pid, function, started."""

    def __init__(self, host: str, info: dict[str, Any]) -> None:
        try:
            self.id: str = info["id"]
            self.state: str = info["state"]
            self.result: Any = info["result"]
            self.pid: int | None = info["pid"]
            self.function: str = info["function"]
            self.started: float = info["started"]
            error = info["error"]
            if not (isinstance(self.id, str) and self.state in ("running", "done", "failed")
                    and (self.pid is None or type(self.pid) is int)):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise ProtocolError(f"{host}: malformed job status: {shown_value(info)}") from None
        self.error: RemoteError | None = remote_error(host, error) if error else None

    def __repr__(self) -> str:
        return f"<JobStatus {self.id} {self.state}>"


class Context:
    """One interpreter reached by the Router: call functions in it, shut it down."""

    def __init__(self, router: Router, context_id: int, name: str, host: str,
                 info: dict[str, Any], via: Context | None = None) -> None:
        self.router = router
        self.context_id = context_id
        self.name = name
        self.host = host
        self.via = via
        self.pid: int = info.get("pid", 0)
        self.python: str = info.get("python", "")
        self.python_version: str = info.get("version", "")
        self.disconnect_reason: str | None = None
        self._lost_as: str | None = None  # the reason its loss came with (see Router)
        self._shut_down = False  # shutdown() asked it to exit: that is why it is gone
        self._gone = compat.Event()
        self._lost_callbacks: list[Callable[[], Any]] = []  # run once it is gone (_call_when_lost)
        self._lost_callbacks_lock = compat.allocate_lock()
        self._modules_pushed: set[str] = set()
        # Module pushes are decided and sent under one lock, so a message another thread
        # sends after a push can never overtake it on the stream.
        self._push_lock = compat.allocate_lock()
        self._connector: Future | None = None  # its local forwards' service (see tunnels)

    def __repr__(self) -> str:
        return f"<Context {self.name!r} id={self.context_id} python={self.python_version}>"

    @property
    def alive(self) -> bool:
        return not self._gone.is_set()

    # -- calls ---------------------------------------------------------------

    def call_async(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Start fn(*args, **kwargs) in the context; return a concurrent.futures.Future.

        fn must be importable by name (a module-level function, a classmethod or
        staticmethod, a builtin or a built-in type's method such as dict.get);
        arguments and the return value must be plain data (None, bool, int,
        float, str, bytes, list, tuple, dict, set, frozenset; a named tuple
        arrives as a tuple that keeps its fields as attributes). The future's
        result(timeout) raises transport.Timeout when the timeout passes. The
        call is sent at once, so the future is running from the start and
        cancel() returns False.
        """
        return self._start(_new_future(), fn, args, kwargs, flush=False)

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run fn(*args, **kwargs) in the context and return its value.

        Raises RemoteError if it raised there, Disconnected if the context is lost.
        """
        self._refuse_to_wait_here()
        return self._start(_Reply(), fn, args, kwargs).result()

    def _start(self, future: Any, fn: Callable[..., Any], args: tuple, kwargs: dict,
               flush: bool = True) -> Any:
        """Send the call; flush=False lets the broker batch it with the calls that follow."""
        return self._start_reference(future, function_reference(fn), args, kwargs, flush)

    def _start_reference(self, future: Any, reference: tuple[str, str], args: tuple,
                         kwargs: dict, flush: bool = True) -> Any:
        """_start, for the function a (module, qualified name) reference names."""
        module, qualname = reference
        if module not in self._modules_pushed:
            self._push_module(module)
        head = _call_heads.get(reference)
        if head is None:
            head = _call_heads[reference] = _call_head(module, qualname)
        try:
            data = (head + (_encoded_within_the_call(args) if args else _NO_ARGS)
                    + (_encoded_within_the_call(kwargs) if kwargs else _NO_KWARGS))
        except codec.CodecError as e:
            raise TypeError(f"cannot send the arguments of {module}.{qualname}: {e}") from None
        self._refuse_oversized(data, f"the arguments of {module}.{qualname}")
        if not self.alive:
            future.set_exception(self._gone_error())
            return future
        self._refuse_in_fork()
        future.context = self
        core = self.router._core
        handle = core.add_reply_handler(future.on_reply, self.context_id)
        core.send(Message(self.context_id, CONTROLLER_ID, CALL_FUNCTION, data, reply_to=handle),
                  flush)
        return future

    def _refuse_in_fork(self) -> None:
        if self.router._core.forked():
            raise TransportError(f"{self.name}: this process is a fork of the one that connected "
                                 "to it, and cannot use its connections: make a Router here")

    def _refuse_to_wait_here(self) -> None:
        """Refuse a wait for a reply that only the calling thread could deliver."""
        self._refuse_in_fork()
        if self.router._broker.in_broker_thread():
            raise TransportError(f"{self.name}: cannot wait for a reply on the router's own thread "
                                 "(in a future's done-callback or a serve() function): use "
                                 "call_async there and do not wait")

    def _request(self, handle: int, value: Any, timeout: float,
                 late: Callable[[tuple], Any] | None = None) -> tuple:
        """Send value to a well-known handle here and wait for the raw reply tuple.

        A lost context or a timeout comes back as ('lost', reason). late(reply), if
        given, gets (on the router's thread) a reply that comes after the timeout.
        """
        self._refuse_to_wait_here()
        reply = _Reply()
        lock = compat.allocate_lock()
        gave_up = []

        def on_reply(msg: Message) -> None:
            if msg.is_dead:
                value: tuple = ("lost", msg.data.decode("utf-8", "replace"))
            else:
                try:
                    value = tuple(codec.decode(msg.data))
                except (codec.CodecError, TypeError, ValueError) as e:
                    value = ("lost", f"malformed reply: {e}")
            with lock:
                if not gave_up:
                    reply.set_result(value)
                    return
            if late is not None:
                late(value)

        core = self.router._core
        reply_to = core.add_reply_handler(on_reply, self.context_id)
        core.send(Message(self.context_id, CONTROLLER_ID, handle, codec.encode(value),
                          reply_to=reply_to))
        try:
            return reply.result(timeout)
        except Timeout:
            with lock:
                if reply.value is not None:  # it came as the wait ended
                    return reply.value
                gave_up.append(True)
            if late is None:
                core.remove_handler(reply_to)
            return ("lost", f"no answer within {timeout}s")

    def serve(self, fn: Callable[[Any], Any]) -> int:
        """Answer questions that code running in this context asks; return the handle to give it.

        Code in a call asks with transport.core.dispatch.ask_caller(handle, value);
        fn(value) runs on the router's thread (keep it short) and its return value
        is the answer; an exception it raises reaches the asker as AskError with
        its text. Values are plain data both ways; fn must treat them as untrusted.
        The service lasts as long as the context.
        """
        core = self.router._core

        def on_question(msg: Message) -> None:
            if msg.is_dead:
                core.remove_handler(handle)
                return
            try:
                answer: tuple = ("ok", fn(codec.decode(msg.data)))
            except BaseException as e:  # the asker gets the reason (sys.exit too), the service goes on
                answer = ("error", f"{type(e).__name__}: {e}")
            if msg.reply_to:
                try:
                    data = codec.encode(answer)
                except codec.CodecError as e:
                    data = codec.encode(("error", f"the answer cannot be sent: {e}"))
                core.send(Message(self.context_id, CONTROLLER_ID, msg.reply_to, data))

        handle = core.add_stream_handler(on_question, self.context_id)
        return handle

    def set_baseline(self, cwd: str | PathLike[str] | None = None,
                     env: dict[str, str | None] | None = None, umask: int | None = None) -> str:
        """Make later calls start in `cwd`, with `env` applied (None unsets a variable)
        and `umask` set (for them and the commands they run).

        Every call otherwise starts from the directory, environment and umask the
        interpreter had when it booted: changes a call makes do not leak into the
        next. Returns the directory calls now start in.
        """
        import os

        from transport.commands import checked_env
        from transport.core import baseline

        if isinstance(cwd, os.PathLike):
            cwd = os.fspath(cwd)
        if umask is not None and (type(umask) is not int or not 0 <= umask <= 0o777):
            raise ValueError(f"umask is a number from 0 to 0o777, not {umask!r}")
        return self.call(baseline.set_baseline, cwd, checked_env(env), umask)

    # -- modules and detached jobs ---------------------------------------------

    def run(self, cmd: str | list[str], *, shell: bool = True,
            env: dict[str, str | None] | None = None, cwd: str | None = None,
            input: bytes | str | None = None, timeout: float | None = None, check: bool = False,
            on_output: Callable[[str, bytes], Any] | None = None, pty: bool = False,
            pty_size: tuple[int, int] = (80, 24), replace_env: bool = False,
            executable: str | None = None) -> CommandResult:
        """Run a command in the context and return its CommandResult.

        A string runs under /bin/sh -c (shell=False splits nothing: pass a list); a
        list runs directly. env adds to the context's environment (None unsets; see
        commands.checked_env for what it may hold), or
        with replace_env=True is the command's whole environment; cwd sets the
        directory, input is fed to stdin (more than a few MiB of it streams in
        windows, as a started command's input does). on_output(stream, chunk) gets
        "stdout"/"stderr" chunks as they come, on the calling thread. timeout kills
        the command's whole process group and raises Timeout; check=True raises
        CommandFailed for a non-zero exit. pty=True runs it on a new pseudo-terminal
        of pty_size (columns, rows) (its stdout and stderr then both arrive as stdout,
        with terminal line endings; after the input, the terminal's end-of-file
        character ends its input, as the end of a pipe does). executable, with a list,
        is the program to run, the list's first item then being only its argv[0]
        (["bash", "-c", line] with executable="/bin/bash" runs a shell named as sshd
        names it).
        """
        from transport import commands

        return commands.run(self, cmd, shell=shell, env=env, cwd=cwd, input=input,
                            timeout=timeout, check=check, on_output=on_output, pty=pty,
                            pty_size=pty_size, replace_env=replace_env, executable=executable)

    def start(self, cmd: str | list[str], *, shell: bool = True,
              env: dict[str, str | None] | None = None, cwd: str | None = None,
              timeout: float | None = None, check: bool = False,
              on_output: Callable[[str, bytes], Any] | None = None, pty: bool = False,
              pty_size: tuple[int, int] = (80, 24),
              replace_env: bool = False, executable: str | None = None) -> RunningCommand:
        """Start a command whose stdin stays open while it runs; return its RunningCommand.

        As run(), but without waiting: write(data) feeds its stdin as it runs (and
        waits, as for a full pipe, while 256 KiB are on their way; BrokenPipeError
        once the command has ended), close_input() ends its input, and wait() hands
        its output to on_output on the waiting thread and returns its CommandResult.
        The command may end before its input does (nothing waits for close_input).
        It runs alongside the context's later calls and commands (these otherwise go
        one at a time); call wait() to free what it holds. On a pty, resize((columns,
        rows)) gives its terminal a new size, as a resized window does.
        """
        from transport import commands

        return commands.start(self, cmd, shell=shell, env=env, cwd=cwd, timeout=timeout,
                              check=check, on_output=on_output, pty=pty, pty_size=pty_size,
                              replace_env=replace_env, executable=executable)

    def signal_commands(self, signum: int = 2) -> None:
        """Send signal signum (default SIGINT, as Ctrl-C at a terminal) to every command
        running in the context now, and to what each started (its process group).

        It acts at once, while the call running the command goes on; that run()
        then returns as the command ends (a command killed by the signal has exit
        code -signum). Commands that end first, or start later, get nothing.
        """
        self._refuse_in_fork()
        if not 0 < signum < 65:
            raise ValueError(f"not a signal number: {signum!r}")
        self.router._core.send(Message(self.context_id, CONTROLLER_ID, SIGNAL_COMMANDS,
                                       codec.encode(int(signum))))

    def forward_logging(self, level: int = 20) -> None:
        """Log the context's own log records (at or above level, default INFO) here.

        They arrive under the logger "transport.remote.<logger name>", prefixed
        with the context's name, at their own level (beyond MAX_REMOTE_LOGGERS
        names, under "transport.remote.other").
        """
        import logging

        from transport.core import logs  # imports logging: only when asked for

        names: set[str] = set()  # a target cannot make loggers without end

        def on_record(msg: Message) -> None:
            if msg.is_dead:
                core.remove_handler(handle)
                return
            try:
                levelno, name, text = codec.decode(msg.data)
                if type(levelno) is not int or not isinstance(text, str):
                    raise TypeError
                # As the target's logs module sends them: a name of one printable line, a
                # level logging knows, the text cut and without escape sequences (a
                # hostile target may send anything).
                name = printable(str(name), 200)
                levelno = min(max(levelno, logging.DEBUG), logging.CRITICAL)
                if len(text) > logs.MAX_TEXT + 100:
                    text = text[:logs.MAX_TEXT] + " [cut]"
                text = shown(text)
                if name not in names:
                    if len(names) >= MAX_REMOTE_LOGGERS:
                        name = "other"
                    names.add(name)
                logging.getLogger(f"transport.remote.{name}").log(levelno, "%s: %s",
                                                                  self.name, text)
            except (codec.CodecError, ValueError, TypeError):
                log.warning("transport", "%s: malformed log record", self.name)

        core = self.router._core
        handle = core.add_stream_handler(on_record, self.context_id)
        self.call(logs.forward, handle, level)

    def put(self, local_path: str | PathLike[str], remote_path: str | PathLike[str],
            mode: int | None = None, preserve_mode: bool = True, in_place: bool = False) -> int:
        """Copy a local file to the context, streamed and uncompressed; return its size.

        Written to a temporary file first, so a failed or interrupted transfer
        never leaves a partial file at remote_path. The mode is the local file's
        unless given; with preserve_mode=False an existing remote_path keeps its
        mode (a new one gets the target's default). A new file, or an existing one
        that is only its name, is replaced by renaming (it keeps its owner, group
        and extended attributes where the target user may set them); one with
        other hard links, a mount point (a bind-mounted file), a device, one this
        user cannot give away, or one in a directory this user cannot write is
        written in place, as scp does; with in_place=True every existing file is
        (as SFTP writes it: a file bind-mounted into a container stays the
        container's file). An existing file the user may not write is refused
        before any data moves. A symlink at remote_path is written through.
        """
        from transport import files

        return files.put(self, local_path, remote_path, mode, preserve_mode, in_place)

    def get(self, remote_path: str | PathLike[str], local_path: str | PathLike[str],
            mode: int | None = None, preserve_mode: bool = True) -> int:
        """Copy a file from the context to local_path, as put() does the other way."""
        from transport import files

        self._refuse_to_wait_here()
        return files.get(self, remote_path, local_path, mode, preserve_mode)

    def forward_local(self, local_port: int, remote_port: int | None = None,
                      remote_host: str = "localhost", local_host: str = "localhost") -> Forward:
        """Forward local_host:local_port here to remote_host:remote_port as seen from the
        context (remote_port defaults to local_port), as `ssh -L` does; Fabric's argument
        names. Each connection accepted here is connected there on a thread of its own
        (neither waiting for the context's calls and commands nor holding them; only the
        connections before a context's first answer about its connect service wait for
        that). Returns a
        Forward (a context manager; its `port` is the port listened on, local_port 0 letting
        the system choose): closing it stops listening and closes the tunnels still open."""
        from transport.tunnels import LocalForward

        remote_port = local_port if remote_port is None else remote_port
        if not remote_port:
            raise ValueError("forward_local: remote_port must be given (local_port is 0)")
        if not self.alive:
            raise self._gone_error()
        return LocalForward(self, local_host, local_port, remote_host, remote_port)

    def forward_remote(self, remote_port: int, local_port: int | None = None,
                       remote_host: str = "127.0.0.1", local_host: str = "localhost") -> Forward:
        """Listen on remote_host:remote_port in the context and forward each connection
        to local_host:local_port here (local_port defaults to remote_port), as `ssh -R`
        does; Fabric's argument names. Returns a Forward, as forward_local() does."""
        from transport.tunnels import RemoteForward

        local_port = remote_port if local_port is None else local_port
        if not local_port:
            raise ValueError("forward_remote: local_port must be given (remote_port is 0)")
        return RemoteForward(self, remote_host, remote_port, local_host, local_port)

    def _refuse_oversized(self, call: bytes, what: str) -> None:
        """A call over the message size limit fails here: the target would take it as a
        protocol violation and leave."""
        if len(call) > self.router.max_message_size:
            raise ValueError(f"{self.name}: cannot send {what}: {len(call)} bytes, over the "
                             f"message size limit of {self.router.max_message_size} (send "
                             "files with put())")

    def _push_module(self, module: str) -> None:
        """On the first call into a module, send it and its closure ahead of the call.

        Messages on one stream arrive in order, so the target finds them cached when
        the call imports them: the first call costs no module round trip.
        """
        with self._push_lock:
            if module in self._modules_pushed:
                return
            in_payload = module.partition(".")[0] == "transport" and module not in ON_DEMAND
            if not (in_payload or is_stdlib(module)):
                entries = self.router._modules.preload_entries(self.context_id, [module],
                                                               whole_packages=False)
                if any(entry[1] != "missing" for entry in entries):
                    self._send_modules(entries)
            # Only now: a caller on another thread that finds it here sends after them.
            self._modules_pushed.add(module)

    def _push_core_module(self, module: str) -> None:
        """Send an on-demand module of the core that imports only the boot payload's
        modules and the standard library, as its file reads, without the module finder
        (whose own imports would cost a cold start milliseconds)."""
        with self._push_lock:
            if module in self._modules_pushed:
                return
            path = os.path.join(CORE_DIR, module.rpartition(".")[2] + ".py")
            source = _core_sources.get(module)
            if source is None:
                with open(path, "rb") as f:
                    source = _core_sources[module] = f.read()
            self._send_modules([(module, "module", path, source)])
            self.router._modules.mark_sent(self.context_id, module)
            self._modules_pushed.add(module)

    def _send_modules(self, entries: list[tuple]) -> None:
        data = pack_entries(entries)
        if len(data) > self.router.max_message_size - 64:  # the context would hang up
            if len(entries) > 1:
                half = len(entries) // 2  # in messages it accepts, in order
                self._send_modules(entries[:half])
                self._send_modules(entries[half:])
            else:
                log.warning("transport", "%s: module %s is %d bytes compressed, more than "
                            "max_message_size: not sent", self.name, entries[0][0], len(data))
                self.router._modules.unsend(self.context_id, entries[0][0])
            return
        if self.via is None:
            msg = Message(self.context_id, CONTROLLER_ID, LOAD_MODULE, data)
        else:
            msg = Message(self.via.context_id, CONTROLLER_ID, FORWARD_MODULE,
                          codec.encode((self.context_id, data)))
        self.router._core.send(msg)

    def preload(self, names: list[str] | str, whole_packages: bool = False) -> None:
        """Send modules (and what they import) to the context before they are needed.

        whole_packages also sends every module inside each named package, for code
        that imports dynamically. Reached through intermediaries, the context's own
        (the last hop) caches them too (FORWARD_MODULE); the hops above it only relay.
        Raises ImportError naming what could not be sent. One name may be given as a str.
        """
        names = [names] if isinstance(names, str) else list(names)  # not its letters
        sent = self._send_modules_ahead(names, whole_packages)
        sendable = [e[0] for e in sent if e[1] != "missing"]
        refused = [e[0] for e in sent if e[1] == "missing" and e[0] in names]
        # A name asked for before was not sent again: whether it was missing then is
        # the finder's to say again.
        went = {e[0] for e in sent}
        finder = self.router._modules.finder
        refused += [name for name in dict.fromkeys(names)
                    if name not in went and finder.entry(name)[1] == "missing"]
        # In order on the same stream: when this call runs, the modules are cached.
        lost = self.call(unavailable, sendable) if sendable else []
        if refused or lost:
            raise ImportError(f"{self.name}: cannot preload {', '.join(refused + lost)} "
                              "(not importable on the controller, a C extension, or the "
                              "standard library)")

    def _send_modules_ahead(self, names: list[str], whole_packages: bool = False) -> list[tuple]:
        """Send modules (and what they import) that the context was not sent yet, without
        waiting: they are cached there before any message sent after them is handled,
        even while the context runs a call. Returns the entries sent."""
        with self._push_lock:
            entries = self.router._modules.preload_entries(self.context_id, list(names),
                                                           whole_packages)
            if entries:
                self._send_modules(entries)
        return entries

    def detach(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job:
        """Start fn(*args, **kwargs) in a process that outlives this connection.

        fn's module and everything it imports are preloaded first, with the data
        files of those packages (up to 32 MiB); the detached process has no parent
        to ask, so any other missing module is an ImportError recorded in the job.
        Collect it with job(id), from this or a later connection to the same host
        and user.
        """
        module, qualname = function_reference(fn)
        # The target's own standard library (and the core, already there) serves the rest.
        if module.partition(".")[0] != "transport" and not is_stdlib(module):
            self.preload([module])
            data_files = self.router._modules.finder.data_files(module)
            if data_files:
                from transport.core import resources

                self.call(resources.keep, data_files)
        from transport.core import jobs

        info = self.call(jobs.detach, module, qualname, args, kwargs)
        if not (isinstance(info, dict) and isinstance(info.get("id"), str)
                and type(info.get("pid")) is int):
            raise ProtocolError(f"{self.name}: malformed answer to a detach: {shown_value(info)}")
        return Job(self, info["id"], info["pid"])

    def job(self, job_id: str) -> JobStatus:
        """The state of a detached job: running, done (with .result) or failed (with .error)."""
        from transport.core import jobs

        return JobStatus(self.name, self.call(jobs.status, job_id))

    def jobs(self) -> list[JobStatus]:
        """Every detached job recorded for this user on this host, oldest first."""
        from transport.core import jobs

        # A reply each (asked for together): results that together exceed what one
        # message may carry are still listed.
        job_ids = self.call(jobs.job_ids)
        if not (isinstance(job_ids, list) and all(isinstance(i, str) for i in job_ids)):
            raise ProtocolError(f"{self.name}: malformed job list: {shown_value(job_ids)}")
        asked = [self.call_async(jobs.status_if_any, job_id) for job_id in job_ids]
        infos = [future.result() for future in asked]
        return [JobStatus(self.name, info) for info in infos if info is not None]

    def forget(self, job_id: str) -> None:
        """Remove a job's record (a job still running goes on)."""
        from transport.core import jobs

        self.call(jobs.forget, job_id)

    # -- ending ----------------------------------------------------------------

    def shutdown(self, wait: bool = True, timeout: float = 5.0) -> None:
        """Ask the interpreter to exit after its current call (its atexit handlers run, as
        at a program's end); wait for it if wait is true
        (for timeout seconds; then its connection is closed, so it hangs up on its
        running commands and leaves)."""
        if self.router._core.forked():
            return  # the parent process's context: not this process's to end
        if self.alive:
            self._shut_down = True
            self.router._send_shutdown(self.context_id)
        if wait and not self.router._broker.in_broker_thread():  # only the loop ends it
            if not self._gone.wait(timeout):
                self.router._hang_up(self)
                self._gone.wait(timeout)

    def _gone_error(self) -> Disconnected:
        """What a use of the context raises once it is gone, naming it and why."""
        if self._shut_down or self.disconnect_reason is None:
            return Disconnected(self.name, "shut down")
        return Disconnected(self.name, self.disconnect_reason)

    def _explained(self, reason: str) -> str:
        """reason for this context's loss, naming the farthest intermediary above it that
        was lost for the same reason first: the connection to that one failed, and every
        context behind it went with it (losses come in that order: see the core router)."""
        first, via = None, self.via
        while via is not None and via._lost_as == reason:
            first, via = via, via.via
        return f"its intermediary {first.name} was lost: {reason}" if first else reason

    def _lost(self, reason: str) -> None:
        if self.disconnect_reason is None:
            self.disconnect_reason = reason
        with self._lost_callbacks_lock:
            self._gone.set()
            callbacks, self._lost_callbacks = self._lost_callbacks, []
        for callback in callbacks:
            _run_lost_callback(self, callback)

    def _call_when_lost(self, callback: Callable[[], Any]) -> None:
        """Call callback() once the context is gone (at once if it is): shut down,
        disconnected, or its router closed. It runs on the thread that learns of the
        loss, usually the broker's, so it must not wait (hand longer work to a thread
        of its own); an exception it raises is logged."""
        with self._lost_callbacks_lock:
            if not self._gone.is_set():
                self._lost_callbacks.append(callback)
                return
        _run_lost_callback(self, callback)

    def _forget_when_lost(self, callback: Callable[[], Any]) -> None:
        """Take back a callback given to _call_when_lost (its owner closed first)."""
        with self._lost_callbacks_lock:
            if callback in self._lost_callbacks:
                self._lost_callbacks.remove(callback)
