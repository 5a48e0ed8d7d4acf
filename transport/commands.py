"""Commands on a context: Context.run() and Context.start(), and what they return.

The command runs on the target (transport.core.commands); its output comes
back in chunks on a handle of its own while the call runs, and the waiting
thread hands each chunk to on_output as it arrives, then returns a
CommandResult holding the output once. run() gives the command its input
whole (or none); start() returns a RunningCommand whose input is live: the
caller writes while the command runs, in a window the target acknowledges.
The target enforces a timeout (it kills the command's process group); the
caller gives up too, TIMEOUT_GRACE seconds after that, should the target
never answer. Its deadline counts from the target's word that the command
started, as the call may have waited behind others there. Once the target
asks for them (after a megabyte), the broker thread acknowledges the output
it receives, so a command's output never piles up on the target or an
intermediary beyond the target's window.
"""

from __future__ import annotations

import errno
import io
import os
import threading

from transport.context import is_handle, reply_value
from transport.core import codec, compat
from transport.core.framing import Message
from transport.core.handles import CALL_FUNCTION, CONTROLLER_ID, SIGNAL_COMMANDS
from transport.errors import (
    MAX_REASON,
    Disconnected,
    ProtocolError,
    RemoteError,
    Timeout,
    TransportError,
    shown,
    shown_value,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from transport.context import Context

TARGET_MODULE = "transport.core.commands"  # not in the payload: sent before the first command
STARTED, STDOUT, STDERR, EXITED, ACKS = 0, 1, 2, 3, 4
ACK_EVERY = 1024 * 1024  # bytes of output received between acknowledgements
# What the target says on a live input's handle.
INPUT_READY, INPUT_TAKEN, INPUT_ENDED, INPUT_TERMINAL = 0, 1, 2, 3
INPUT_WINDOW = 256 * 1024  # bytes of live input in flight, at most
INPUT_CHUNK = 64 * 1024
INLINE_INPUT = 4 * 1024 * 1024  # run()'s input up to this travels in the call itself
TIMEOUT_GRACE = 30.0
HANG_UP = 1  # SIGHUP, for a command nobody waits for any more
_STREAMS = {STDOUT: "stdout", STDERR: "stderr"}


class CommandResult:
    """What a command did: exit_code, stdout and stderr (bytes), and the command."""

    def __init__(self, command: str | list[str], exit_code: int, stdout: bytes, stderr: bytes,
                 host: str = "") -> None:
        self.command = command
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.host = host

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def text(self, stream: str = "stdout", encoding: str = "utf-8", errors: str = "replace") -> str:
        """stdout (or stderr) decoded."""
        return getattr(self, stream).decode(encoding, errors)

    def __repr__(self) -> str:
        return (f"CommandResult(exit_code={self.exit_code}, stdout={len(self.stdout)} bytes, "
                f"stderr={len(self.stderr)} bytes)")


class CommandFailed(TransportError):
    """check=True and the command exited non-zero; .result is its CommandResult and
    .host its host."""

    def __init__(self, result: CommandResult) -> None:
        from transport.bootstrap import shell_join

        command = result.command if isinstance(result.command, str) else shell_join(result.command)
        tail = result.text("stderr").strip().splitlines()[-1:] or [""]
        said = shown(tail[0], MAX_REASON)
        super().__init__(f"{result.host}: command exited with status {result.exit_code}: "
                         f"{command}" + (f": {said}" if said else ""))
        self.result = result
        self.host = result.host


def _output_chunk(context: Context, data: bytes) -> tuple[int, Any]:
    """An output message decoded: (STARTED, STDOUT, STDERR or EXITED, bytes), or
    (ACKS, the handle where acknowledgements go)."""
    try:
        which, chunk = codec.decode(data)
        if which == ACKS:
            if not is_handle(chunk):
                raise ValueError(f"acknowledgements to handle {shown_value(chunk)}")
        elif which not in (STARTED, STDOUT, STDERR, EXITED) or not isinstance(chunk, bytes):
            raise ValueError(f"stream {shown_value(which)}")
    except (codec.CodecError, TypeError, ValueError) as e:
        raise ProtocolError(f"{context.name}: malformed command output: {shown_value(e)}") from None
    return which, chunk


class _LiveInput:
    """The caller's side of a command's live input: writes wait for the target's handle
    and for room in the window; the broker thread hands over the target's word."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self._condition = threading.Condition()
        self._target_handle: int | None = None
        self._terminal_handle: int | None = None  # a pty's: where a new size goes
        self._size: tuple[int, int] | None = None  # a size to send once that is known
        self._in_flight = 0
        self._ended = False  # the command has ended (or will never start): nothing more goes
        self._closed = False

    def on_message(self, msg: Message) -> None:
        """Broker thread: the target's handle, an acknowledgement, or the context's loss."""
        with self._condition:
            self._condition.notify_all()
            if msg.is_dead:
                self._ended = True
                return
            try:
                kind, value = _input_word(self._context, msg.data)
            except ProtocolError:
                self._ended = True  # reported by the broker; writers stop waiting
                raise
            if kind == INPUT_READY:
                self._target_handle = value
            elif kind == INPUT_TAKEN:
                self._in_flight = max(0, self._in_flight - value)
            elif kind == INPUT_TERMINAL:
                self._terminal_handle = value
                if self._size is not None:
                    self._send_size()
            else:
                self._ended = True

    def end(self) -> None:
        with self._condition:
            self._ended = True
            self._condition.notify_all()

    def replied(self) -> None:
        """Broker thread: the call's reply came. A command that started said where its
        input goes before that; one that did not start never will."""
        with self._condition:
            if self._target_handle is None:
                self._ended = True
                self._condition.notify_all()

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError(f"{self._context.name}: the command's input is closed")
        view = memoryview(data)
        while view:
            chunk = bytes(view[:INPUT_CHUNK])
            with self._condition:
                while not self._ended and (
                        self._target_handle is None
                        or (self._in_flight and self._in_flight + len(chunk) > INPUT_WINDOW)):
                    self._context._refuse_to_wait_here()  # only the broker's thread ends it
                    self._condition.wait()
                if self._ended:
                    if not self._context.alive:  # not the command's end: its context's
                        raise self._context._gone_error()
                    raise BrokenPipeError(errno.EPIPE, f"{self._context.name}: the command has "
                                          "ended, and its input with it")
                self._in_flight += len(chunk)
                self._send(chunk)
            view = view[len(chunk):]

    def close(self) -> None:
        with self._condition:
            if self._closed:
                return
            if not self._ended and self._target_handle is None:
                self._context._refuse_to_wait_here()  # only the broker's thread ends the wait
            self._closed = True
            while not self._ended and self._target_handle is None:
                self._condition.wait()
            if not self._ended:
                self._send(b"")

    def resize(self, size: tuple[int, int]) -> None:
        """Send the terminal's new size now, or once the target has said where to."""
        with self._condition:
            self._size = size
            if self._terminal_handle is not None and not self._ended:
                self._send_size()

    def _send_size(self) -> None:
        assert self._terminal_handle is not None
        self._context.router._core.send(Message(self._context.context_id, CONTROLLER_ID,
                                                self._terminal_handle, codec.encode(self._size)))
        self._size = None

    def _send(self, chunk: bytes) -> None:
        assert self._target_handle is not None
        self._context.router._core.send(Message(self._context.context_id, CONTROLLER_ID,
                                                self._target_handle, chunk))


def _size(pty_size: tuple[int, int]) -> tuple[int, int]:
    """A terminal's (columns, rows), checked: each from 1 to 65535."""
    try:
        columns, rows = (int(n) for n in pty_size)
    except (TypeError, ValueError):
        raise ValueError(f"pty_size must be (columns, rows), not {pty_size!r}") from None
    if not (0 < columns < 65536 and 0 < rows < 65536):
        raise ValueError(f"pty_size must be (columns, rows) from 1 to 65535, not {pty_size!r}")
    return columns, rows


def checked_env(env: Any) -> dict[str, str | bytes | None] | None:
    """env as a command (or set_baseline) takes it, checked here so that every target
    Python refuses the same things with the same words: names are non-empty str
    without "=" or NUL, values str or bytes without NUL, or None to unset. No value
    is shown in an error: an environment carries secrets."""
    if env is None:
        return None
    if not isinstance(env, dict):
        raise TypeError(f"env must be a dict of names to values, not {type(env).__name__}")
    for name, value in env.items():
        if not isinstance(name, str):
            raise TypeError(f"env names are str, not {type(name).__name__}")
        if not name or "=" in name or "\0" in name:
            raise ValueError(f"env: {shown_value(name)} is not a variable name (it is empty "
                             "or holds '=' or NUL)")
        if value is not None and not isinstance(value, (str, bytes)):
            raise TypeError(f"env[{shown_value(name)}] is {type(value).__name__}: values are "
                            "str or bytes (None unsets the variable)")
        if value is not None and ("\0" in value if isinstance(value, str) else b"\0" in value):
            raise ValueError(f"env[{shown_value(name)}] holds a NUL character")
    return env


def _checked_command(cmd: Any, cwd: Any, timeout: Any) -> tuple[Any, Any]:
    """(cmd, cwd) with paths as text (pathlib.Path words and cwd, as subprocess takes
    them); refuse here what every target would refuse later, and less clearly."""
    if isinstance(cmd, (list, tuple)):
        if not cmd:
            raise ValueError("the command is an empty list: name a program")
        cmd = [os.fspath(word) if isinstance(word, os.PathLike) else word for word in cmd]
        for word in cmd:
            if not isinstance(word, (str, bytes)):
                raise TypeError(f"the command's words are str or bytes, not "
                                f"{type(word).__name__}")
    elif not isinstance(cmd, str):
        raise TypeError(f"the command is a str or a list of words, not {type(cmd).__name__}")
    if isinstance(cwd, os.PathLike):
        cwd = os.fspath(cwd)
    if cwd is not None and not isinstance(cwd, (str, bytes)):
        raise TypeError(f"cwd is a str or bytes path, not {type(cwd).__name__}")
    if timeout is not None:
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
            raise TypeError(f"timeout is a number of seconds, not {type(timeout).__name__}")
        if not timeout >= 0:
            raise ValueError(f"timeout is a number of seconds, not {timeout!r}")
    return cmd, cwd


def _input_word(context: Context, data: bytes) -> tuple[int, int]:
    """A message to the input handle decoded: (INPUT_READY, handle), (INPUT_TAKEN, bytes),
    (INPUT_ENDED, 0) or (INPUT_TERMINAL, handle)."""
    try:
        kind, value = codec.decode(data)
        if (kind not in (INPUT_READY, INPUT_TAKEN, INPUT_ENDED, INPUT_TERMINAL)
                or type(value) is not int
                or value < 0
                or (kind in (INPUT_READY, INPUT_TERMINAL) and not is_handle(value))):
            raise ValueError(f"{shown_value(kind)}, {shown_value(value)}")
    except (codec.CodecError, TypeError, ValueError) as e:
        raise ProtocolError(f"{context.name}: malformed command input word: {shown_value(e)}") from None
    return kind, value


class RunningCommand:
    """A command started by Context.start(): write() its input while it runs, then wait().

    Its stdin stays open until close_input() (or its end): the target's pipe (or
    terminal) takes what write() sends, at most INPUT_WINDOW bytes ahead of the
    command, so write() waits as a write to a full pipe would. It runs alongside the
    context's later calls and commands (a thread of its own on the target streams
    its output and says how it ended).
    """

    def __init__(self, context: Context, cmd: str | list[str], *, shell: bool,
                 env: dict[str, str | None] | None, cwd: str | None, input: bytes | None,
                 timeout: float | None, check: bool,
                 on_output: Callable[[str, bytes], Any] | None, pty: bool,
                 pty_size: tuple[int, int], replace_env: bool, live: bool,
                 executable: str | None = None) -> None:
        env = checked_env(env)
        cmd, cwd = _checked_command(cmd, cwd, timeout)
        if not context.alive:
            raise context._gone_error()
        self.context = context
        self.command = cmd
        self._pty = pty
        self._timeout = timeout
        self._check = check
        self._on_output = on_output
        self._outcome: CommandResult | BaseException | None = None
        self._collecting = threading.Lock()  # one waiting thread collects; the others get that
        options: dict[str, Any] = {"use_pty": True, "pty_size": _size(pty_size)} if pty else {}
        context._push_module(TARGET_MODULE)  # sent ahead of the call (once): no round trip
        core = context.router._core
        self._events: compat.SimpleQueue = compat.SimpleQueue()
        self._abandoned = False  # nobody waits for it: its end only releases its handles
        self._exited = False  # a command run alongside said how it ended (EXITED)
        self._received = self._acknowledged = 0  # bytes of output messages
        self._ack_handle: int | None = None  # the target's, once it asks for acknowledgements
        self._event_lock = threading.Lock()
        # A start()ed command's call has replied (it started, or failed to); a hang-up
        # asked for before that waits for it: a target keeps a signal for a command it
        # has not begun only once its commands module is loaded, which a context's first
        # command finds it is not.
        self._replied = False
        self._early_hang_up = False
        self._output_handle = core.add_stream_handler(self._on_event, context.context_id)
        self._input = _LiveInput(context) if live else None
        self._input_handle = None
        if replace_env:
            options["replace_env"] = True
        if executable is not None:
            options["executable"] = executable
        if self._input is not None:
            self._input_handle = core.add_stream_handler(self._input.on_message,
                                                         context.context_id)
            options["input_handle"] = self._input_handle
        self._reply_handle = core.add_reply_handler(self._on_reply, context.context_id)
        call = codec.encode((TARGET_MODULE, "run", (cmd, shell, env, cwd, input, timeout,
                                                    self._output_handle), options))
        try:
            context._refuse_oversized(call, "the command with its environment and input")
        except ValueError:
            self._release()
            raise
        core.send(Message(context.context_id, CONTROLLER_ID, CALL_FUNCTION, call,
                          reply_to=self._reply_handle))

    def _on_reply(self, msg: Message) -> None:
        if self._input is not None:
            self._input.replied()
            with self._event_lock:
                self._replied = True
                early, self._early_hang_up = self._early_hang_up, False
            if early:
                self._send_hang_up()
        self._on_event(msg)

    def _on_event(self, msg: Message) -> None:
        """Broker thread: an event for wait() (the reply or the context's loss as a
        Message, output decoded as (stream, value), or the ProtocolError it is), or
        after wait() gave up, the end it waits for. Output is acknowledged as it comes."""
        event: Message | tuple[int, Any] | ProtocolError = msg
        output = msg.handle == self._output_handle and not msg.is_dead
        if output:
            try:
                event = _output_chunk(self.context, msg.data)
            except ProtocolError as e:
                event = e
        with self._event_lock:
            abandoned = self._abandoned
            if not abandoned:
                self._events.put(event)
        if output:
            self._acknowledge(len(msg.data), event)
        if abandoned and self._ends(event):
            self._release()

    def _acknowledge(self, size: int, event: tuple[int, Any] | ProtocolError) -> None:
        """Broker thread: an output message of size bytes came (each counts, the
        malformed too); acknowledge what came once the target has asked, and then every
        ACK_EVERY bytes."""
        self._received += size
        if isinstance(event, tuple) and event[0] == ACKS:
            self._ack_handle = event[1]
        elif self._ack_handle is None or self._received - self._acknowledged < ACK_EVERY:
            return
        self._acknowledged = self._received
        self.context.router._core.send(Message(self.context.context_id, CONTROLLER_ID,
                                               self._ack_handle, codec.encode(self._received)))

    def _ends(self, event: Message | tuple[int, Any] | ProtocolError) -> bool:
        """Whether event is the command's last (the call's reply, or for one run
        alongside, its EXITED word or a reply other than "started"), or says its
        context went, or is malformed."""
        if isinstance(event, ProtocolError):
            return True
        if isinstance(event, tuple):
            return event[0] == EXITED
        if event.is_dead:
            return True
        try:
            return (self._input is None or self._exited
                    or reply_value(self.context.name, event.data) != "started")
        except (ProtocolError, TransportError):
            return True

    def _release(self) -> None:
        core = self.context.router._core
        core.remove_handler(self._output_handle)
        core.remove_handler(self._reply_handle)
        if self._input is not None:
            core.remove_handler(self._input_handle)
            self._input.end()

    def _abandon(self) -> None:
        """wait() ended before the command did (its on_output raised, an interrupt, the
        controller's own deadline): hang up on the command, as a closed terminal would,
        so that it does not hold the context; its handles go when its end comes."""
        with self._event_lock:
            self._abandoned = True
            pending = []
            while True:
                try:
                    pending.append(self._events.get_nowait())
                except compat.Empty:
                    break
        if any(self._ends(event) for event in pending):
            self._release()
        else:
            self.hang_up()

    def write(self, data: bytes | str) -> None:
        """Send data (str: UTF-8) to the command's stdin; BrokenPipeError once it has ended."""
        if self._input is None:
            raise ValueError(f"{self.context.name}: only a started command takes input")
        self._input.write(data.encode() if isinstance(data, str) else data)

    def resize(self, pty_size: tuple[int, int]) -> None:
        """Give the command's terminal a new size (columns, rows), as a resized window
        does: what runs in its foreground gets SIGWINCH. Nothing once it has ended."""
        if self._input is None or not self._pty:
            raise ValueError(f"{self.context.name}: only a started command on a pty has a size")
        self._input.resize(_size(pty_size))

    def hang_up(self) -> None:
        """Hang up on the command, as a closed terminal or ssh channel would: SIGHUP to
        its process group (nothing once it has ended); wait() returns at its end."""
        if not self.context.alive:
            return
        with self._event_lock:
            if self._input is not None and not self._replied:
                self._early_hang_up = True  # sent once the target has started it
                return
        self._send_hang_up()

    def _send_hang_up(self) -> None:
        self.context.router._core.send(Message(
            self.context.context_id, CONTROLLER_ID, SIGNAL_COMMANDS,
            codec.encode((HANG_UP, self._output_handle))))

    def close_input(self) -> None:
        """End the command's input: its stdin closes (on a terminal, the end-of-file
        character is typed). Nothing happens if it has ended already."""
        if self._input is not None:
            self._input.close()

    def wait(self) -> CommandResult:
        """Wait for the command's end, handing its output to on_output on this thread
        as it comes; return its CommandResult (or raise Timeout, CommandFailed,
        Disconnected as run() does)."""
        if self._outcome is None:
            self.context._refuse_to_wait_here()
        with self._collecting:
            if self._outcome is None:
                try:
                    self._outcome = self._collect()
                except BaseException as e:  # its handlers are gone: a second wait() says the same
                    self._outcome = e
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    def _collect(self) -> CommandResult:
        context, timeout, cmd = self.context, self._timeout, self.command
        # Each chunk is copied in as it comes and the whole taken out without a copy
        # (BytesIO hands over its buffer): the peak is the output once, not twice.
        output = {STDOUT: io.BytesIO(), STDERR: io.BytesIO()}
        deadline = None  # set when the target says the command started (with a timeout only)
        # Run alongside, it may end before the call's reply ("started") comes: both are awaited.
        status: Any = None
        replied = ended = False
        try:
            while not (replied and ended):
                try:
                    event = self._events.get(timeout=None if deadline is None
                                             else max(0.0, deadline - compat.monotonic()))
                except compat.Empty:
                    raise Timeout(f"no answer {TIMEOUT_GRACE:g}s after the command's timeout "
                                  f"of {timeout}s: {cmd}", context.name) from None
                if isinstance(event, ProtocolError):
                    raise event
                if isinstance(event, Message):
                    if event.is_dead:  # nothing more will come: nothing to hang up on
                        replied = ended = True
                        raise Disconnected(context.name, event.data.decode("utf-8", "replace"))
                    try:
                        value = reply_value(context.name, event.data)  # exit status, or "timeout"
                    except RemoteError:  # it did not start (no such program): nothing follows
                        replied = ended = True
                        raise
                    replied = True
                    if self._input is None:  # else "started", and its end comes as EXITED
                        status, ended = value, True
                    continue
                which, chunk = event
                if which == ACKS:
                    continue
                if which == EXITED:
                    self._exited = True
                    status, ended = reply_value(context.name, chunk), True
                    continue
                if which == STARTED:
                    if timeout is not None and deadline is None:
                        deadline = compat.monotonic() + timeout + TIMEOUT_GRACE
                    continue
                output[which].write(chunk)
                if self._on_output is not None:  # the caller's own code: its errors are its own
                    self._on_output(_STREAMS[which], chunk)
        finally:
            if (replied and ended) or not context.alive:
                self._release()
            else:
                self._abandon()
        if status == "timeout":
            raise Timeout(f"command timed out after {timeout}s and was killed: {cmd}", context.name)
        if type(status) is not int:
            raise ProtocolError(f"{context.name}: malformed exit status: {shown_value(status)}")
        result = CommandResult(cmd, status, output[STDOUT].getvalue(), output[STDERR].getvalue(),
                               context.name)
        if self._check and not result.ok:
            raise CommandFailed(result)
        return result


def start(context: Context, cmd: str | list[str], *, shell: bool = True,
          env: dict[str, str | None] | None = None, cwd: str | None = None,
          input: bytes | str | None = None, timeout: float | None = None, check: bool = False,
          on_output: Callable[[str, bytes], Any] | None = None, pty: bool = False,
          pty_size: tuple[int, int] = (80, 24), replace_env: bool = False,
          executable: str | None = None,
          live: bool = True) -> RunningCommand:
    if isinstance(input, str):
        input = input.encode()
    if executable is not None and not isinstance(cmd, (list, tuple)):
        raise ValueError("executable= goes with a command given as a list")
    return RunningCommand(context, cmd, shell=shell, env=env, cwd=cwd, input=input,
                          timeout=timeout, check=check, on_output=on_output, pty=pty,
                          pty_size=pty_size, replace_env=replace_env, live=live,
                          executable=executable)


def run(context: Context, cmd: str | list[str], **options: Any) -> CommandResult:
    context._refuse_to_wait_here()
    data = options.pop("input", None)
    if isinstance(data, str):
        data = data.encode()
    elif data is not None and not isinstance(data, bytes):
        raise TypeError(f"input is bytes or str, not {type(data).__name__}")
    if data is None or len(data) <= min(INLINE_INPUT, context.router.max_message_size // 2):
        return start(context, cmd, live=False, input=data, **options).wait()
    # Large input streams in windows, as a started command's does (whole, in the call,
    # it would be held twice in memory, and over the message size limit refused).
    command = start(context, cmd, **options)
    feeder = threading.Thread(target=_feed, args=(command, data), daemon=True,
                              name=f"transport-input-{context.name}")
    feeder.start()
    try:
        return command.wait()
    finally:
        command._input.end()  # a wait() that ended early: the feeder stops at once
        feeder.join()


def _feed(command: RunningCommand, data: bytes) -> None:
    """Write data to the command's stdin and close it; a command that stops reading
    takes no more, as with a pipe."""
    try:
        command.write(data)
        command.close_input()
    except (BrokenPipeError, TransportError):
        pass  # the command ended first, or the context went: wait() says so
