"""Commands on a context: Context.run() and what it returns.

The command runs on the target (transport.core.commands); its output comes
back in chunks on a handle of its own while the call runs, and the calling
thread hands each chunk to on_output as it arrives, then returns a
CommandResult holding the output once. The target enforces a timeout (it
kills the command's process group); the caller gives up too, TIMEOUT_GRACE
seconds after that, should the target never answer. Its deadline counts from
the target's word that the command started, as the call may have waited
behind others there.
"""

from __future__ import annotations

from transport.context import reply_value
from transport.core import codec, compat
from transport.core.framing import Message
from transport.core.handles import CALL_FUNCTION, CONTROLLER_ID
from transport.errors import Disconnected, ProtocolError, Timeout, TransportError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from transport.context import Context

TARGET_MODULE = "transport.core.commands"  # not in the payload: sent before the first command
STARTED, STDOUT, STDERR = 0, 1, 2
TIMEOUT_GRACE = 30.0
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
    """check=True and the command exited non-zero; .result is its CommandResult."""

    def __init__(self, result: CommandResult) -> None:
        from transport.bootstrap import shell_join

        command = result.command if isinstance(result.command, str) else shell_join(result.command)
        tail = result.text("stderr").strip().splitlines()[-1:] or [""]
        super().__init__(f"{result.host}: command exited with status {result.exit_code}: "
                         f"{command}" + (f": {tail[0]}" if tail[0] else ""))
        self.result = result


def _output_chunk(context: Context, data: bytes) -> tuple[int, bytes]:
    """An output message decoded: (STARTED, STDOUT or STDERR, bytes)."""
    try:
        which, chunk = codec.decode(data)
        if which not in (STARTED, STDOUT, STDERR) or not isinstance(chunk, bytes):
            raise ValueError(f"stream {which!r}")
    except (codec.CodecError, TypeError, ValueError) as e:
        raise ProtocolError(f"{context.name}: malformed command output: {e!r}") from None
    return which, chunk


def run(context: Context, cmd: str | list[str], *, shell: bool = True,
        env: dict[str, str | None] | None = None, cwd: str | None = None,
        input: bytes | str | None = None, timeout: float | None = None, check: bool = False,
        on_output: Callable[[str, bytes], Any] | None = None, pty: bool = False,
        replace_env: bool = False) -> CommandResult:
    if isinstance(input, str):
        input = input.encode()
    if not context.alive:
        raise Disconnected(context.name, context.disconnect_reason or "shut down")
    context._refuse_to_wait_here()
    context._push_module(TARGET_MODULE)  # sent ahead of the call (once): no round trip
    core = context.router._core
    events: compat.SimpleQueue = compat.SimpleQueue()
    output_handle = core.add_stream_handler(events.put, context.context_id)
    reply_handle = core.add_reply_handler(events.put, context.context_id)
    options = {"use_pty": True} if pty else {}
    if replace_env:
        options["replace_env"] = True
    call = codec.encode((TARGET_MODULE, "run",
                         (cmd, shell, env, cwd, input, timeout, output_handle), options))
    core.send(Message(context.context_id, CONTROLLER_ID, CALL_FUNCTION, call, reply_to=reply_handle))
    chunks: dict[int, list[bytes]] = {STDOUT: [], STDERR: []}
    deadline = None  # set when the target says the command started (with a timeout only)
    try:
        while True:
            try:
                msg = events.get(timeout=None if deadline is None
                                 else max(0.0, deadline - compat.monotonic()))
            except compat.Empty:
                raise Timeout(f"{context.name}: no answer {TIMEOUT_GRACE:g}s after the "
                              f"command's timeout of {timeout}s: {cmd}") from None
            if msg.is_dead:
                raise Disconnected(context.name, msg.data.decode("utf-8", "replace"))
            if msg.handle != output_handle:
                status = reply_value(context.name, msg.data)  # the exit status, or "timeout"
                break
            which, chunk = _output_chunk(context, msg.data)
            if which == STARTED:
                if timeout is not None and deadline is None:
                    deadline = compat.monotonic() + timeout + TIMEOUT_GRACE
                continue
            chunks[which].append(chunk)
            if on_output is not None:  # the caller's own code: its errors are its own
                on_output(_STREAMS[which], chunk)
    finally:
        core.remove_handler(output_handle)
        core.remove_handler(reply_handle)
    if status == "timeout":
        raise Timeout(f"{context.name}: command timed out after {timeout}s and was killed: {cmd}")
    result = CommandResult(cmd, status, b"".join(chunks[STDOUT]), b"".join(chunks[STDERR]),
                           context.name)
    if check and not result.ok:
        raise CommandFailed(result)
    return result
