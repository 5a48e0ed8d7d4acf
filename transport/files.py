"""File transfer for the controller: Context.put() and Context.get().

Both stream the file in chunks with at most WINDOW bytes unacknowledged, so
neither side holds a whole file, and nothing is compressed. The receiving
side writes a temporary file and puts it in place (by renaming it, or by
writing an existing file that is more than its name in place) only after
the size checks out: an interrupted transfer never leaves a partial file at
the destination. The file gets the source's mode unless a mode is given or
preserve_mode is False; then an existing destination keeps its own. A get
keeps only the permission bits (0o777, as OpenSSH's sftp does): a target
never makes a setuid, setgid or sticky file on the controller.
Symlinks, owners, links and attributes are handled as transport/core/files.py
says.
"""

from __future__ import annotations

import errno
import os
import stat

from transport.context import is_handle
from transport.core import codec, compat, files
from transport.core.framing import Message
from transport.core.handles import CONTROLLER_ID
from transport.errors import Disconnected, ProtocolError, TransportError, shown_value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from concurrent.futures import Future
    from os import PathLike
    from typing import Any, Callable

    from transport.context import Context

CHUNK = 256 * 1024
WINDOW = 8 * 1024 * 1024
ACK_TIMEOUT = 120.0
# What a transfer's handle may hold unread: acknowledgements (a number each, one per chunk
# in flight) for a put, a window's data and a chunk for a get, with room to spare.
ACKS_WAITING = 64 * 1024
DATA_WAITING = 2 * WINDOW


class _Inbox:
    """A transfer handle's messages, queued by the broker thread for the caller's.

    At most `limit` bytes wait: a target that sends more (floods, or ignores the
    window) would fill this process, so the caller gets a ProtocolError instead, and
    later messages are dropped. None (the end) is queued as it is."""

    def __init__(self, context: Context, limit: int) -> None:
        self._context = context
        self._limit = limit
        self._queue: compat.SimpleQueue = compat.SimpleQueue()
        self._waiting = 0
        self._refused = False
        self._lock = compat.allocate_lock()

    def put(self, msg: Message | None) -> None:
        """Broker thread (or a done-callback, with None)."""
        if msg is None:
            self._queue.put(None)
            return
        with self._lock:
            if self._refused:
                return
            self._waiting += len(msg.data)
            self._refused = self._waiting > self._limit
        if self._refused:
            msg = ProtocolError(f"{self._context.name}: sent more than a transfer waits for "
                                f"({self._limit} bytes unread)")
        self._queue.put(msg)

    def get(self, timeout: float) -> Message | None:
        """The next message (compat.Empty after timeout); raises the refusal."""
        msg = self._queue.get(timeout=timeout)
        if isinstance(msg, ProtocolError):
            raise msg
        if msg is not None:
            with self._lock:
                self._waiting -= len(msg.data)
        return msg


def path_argument(path: Any, what: str) -> str:
    """A path argument as text: a str, or an os.PathLike (pathlib.Path); never empty."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"{what} is a path (str or pathlib.Path), not {type(path).__name__}")
    if not path:
        raise ValueError(f"{what} is empty: name a file")
    return path


def _check_mode(mode: Any) -> None:
    if mode is None:
        return
    if type(mode) is not int:
        raise TypeError(f"mode is an int of permission bits (0o644), not {type(mode).__name__}")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"mode is permission bits from 0 to 0o7777, not {oct(mode)}")


def put(context: Context, local_path: str | PathLike[str], remote_path: str | PathLike[str],
        mode: int | None = None, preserve_mode: bool = True, in_place: bool = False) -> int:
    """Copy local_path to remote_path on the context; return the bytes written.

    An existing file is replaced by renaming unless that would lose something (see
    transport/core/files.py); in_place=True writes it in place always, as SFTP does.
    """
    local_path = path_argument(local_path, "local_path")
    remote_path = path_argument(remote_path, "remote_path")
    _check_mode(mode)
    st = os.stat(local_path)
    if not stat.S_ISREG(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "not a regular file", local_path)
    if mode is None and preserve_mode:
        mode = stat.S_IMODE(st.st_mode)
    core = context.router._core
    acks = _Inbox(context, ACKS_WAITING)
    ack_handle = core.add_stream_handler(acks.put, context.context_id)
    aborting = None
    try:
        starting = context.call_async(files.start_receive, remote_path, st.st_size, mode,
                                      ack_handle, in_place)
        try:
            data_handle = starting.result()
        except BaseException:
            if not starting.done():  # interrupted (Ctrl-C): give up there once it has begun
                starting.add_done_callback(lambda started: _abort_receive(context, started))
            raise
        if not is_handle(data_handle):
            raise ProtocolError(f"{context.name}: {remote_path}: the target asked for the data "
                                f"at {shown_value(data_handle)}, not a handle")
        try:
            _send_chunks(context, local_path, data_handle, acks)
            return context.call(files.finish_receive, data_handle)
        except BaseException:
            if context.alive:
                aborting = context.call_async(files.abort_receive, data_handle)
            raise
    finally:
        if aborting is None:
            core.remove_handler(ack_handle)
        else:  # the chunks on the way are still acknowledged: taken quietly until it ends
            aborting.add_done_callback(lambda future: core.remove_handler(ack_handle))


def _abort_receive(context: Context, started: Future) -> None:
    """Broker thread: a put was given up on while its start_receive was under way; once
    that has answered, have the context discard what it began."""
    if started.exception() is None and context.alive:
        context.call_async(files.abort_receive, started.result())


def _send_chunks(context: Context, local_path: str, data_handle: int, acks: _Inbox) -> None:
    core = context.router._core
    unacknowledged = 0
    with open(local_path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return
            while unacknowledged + len(chunk) > WINDOW:
                acknowledged = _acknowledged(context, acks)
                if acknowledged == files.GAVE_UP:
                    return  # a write failed there: finish_receive says why
                if type(acknowledged) is not int or not 0 < acknowledged <= unacknowledged:
                    # More would open the window: this process would hold the whole file.
                    raise ProtocolError(f"{context.name}: acknowledged {shown_value(acknowledged)} bytes "
                                        f"of the {unacknowledged} sent")
                unacknowledged -= acknowledged
            core.send(Message(context.context_id, CONTROLLER_ID, data_handle, chunk))
            unacknowledged += len(chunk)


def _acknowledged(context: Context, acks: _Inbox) -> int:
    try:
        msg = acks.get(timeout=ACK_TIMEOUT)
    except compat.Empty:
        raise TransportError(f"{context.name}: no acknowledgement for {ACK_TIMEOUT}s") from None
    if msg.is_dead:
        raise Disconnected(context.name, msg.data.decode("utf-8", "replace"))
    try:
        return codec.decode(msg.data)
    except codec.CodecError as e:
        raise ProtocolError(f"{context.name}: malformed acknowledgement: {shown_value(e)}") from None


def get(context: Context, remote_path: str | PathLike[str], local_path: str | PathLike[str],
        mode: int | None = None, preserve_mode: bool = True) -> int:
    """Copy remote_path on the context to local_path; return the bytes written."""
    remote_path = path_argument(remote_path, "remote_path")
    local_path = path_argument(local_path, "local_path")
    _check_mode(mode)
    core = context.router._core
    events = _Inbox(context, DATA_WAITING)
    local_path = files.destination(local_path)
    fd, temporary = files.open_temporary(local_path)  # (a path refused here needs no handle)
    data_handle = core.add_stream_handler(events.put, context.context_id)
    done = None
    try:
        done = context.call_async(files.send, remote_path, data_handle, WINDOW)
        done.add_done_callback(lambda future: events.put(None))
        received = _receive_chunks(context, fd, events, local_path)
        answer = done.result()  # the sender's error, if any, is raised here
        if not (isinstance(answer, tuple) and len(answer) == 2 and type(answer[0]) is int):
            raise ProtocolError(f"{context.name}: {remote_path}: malformed answer to a get: "
                                f"{shown_value(answer)}")
        sent, remote_mode = answer
        if type(remote_mode) is not int:
            raise TransportError(f"{context.name}: {remote_path}: the target sent a mode that "
                                 f"is not a number: {shown_value(remote_mode)}")
        if received != sent:
            raise TransportError(f"{context.name}: {remote_path}: received {received} bytes, "
                                 f"sent {sent}")
        _locally(local_path, context, os.fsync, fd)
        os.close(fd)
        fd = -1
        if mode is None and preserve_mode:
            # The permission bits only, as OpenSSH's sftp keeps them: a target never makes
            # a setuid, setgid or sticky file here.
            mode = remote_mode & 0o777
        files.settle(temporary, local_path, mode)
        return received
    finally:
        if done is not None and not done.done():
            # Given up: the chunks still on the way are taken quietly until the sender stops.
            done.add_done_callback(lambda future: core.remove_handler(data_handle))
        else:
            core.remove_handler(data_handle)
        if fd >= 0:
            os.close(fd)
        if temporary in files.in_flight:
            files.discard(temporary)


def _locally(local_path: str, context: Context, write: Callable[..., Any], *args: Any) -> Any:
    """write(*args), whose error (a full disk) says it is this machine's, not the host's."""
    try:
        return write(*args)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror} (on this machine, in a get from {context.name})",
                      local_path) from None


def _receive_chunks(context: Context, fd: int, events: _Inbox, local_path: str) -> int:
    core = context.router._core
    ack_to = None
    received = 0
    try:
        while True:
            try:
                msg = events.get(timeout=ACK_TIMEOUT)
            except compat.Empty:
                raise TransportError(f"{context.name}: no data for {ACK_TIMEOUT}s") from None
            if msg is None:
                return received
            if msg.is_dead:
                raise Disconnected(context.name, msg.data.decode("utf-8", "replace"))
            try:
                kind, value = codec.decode(msg.data)
                if kind == "ack":
                    if not is_handle(value):
                        raise ValueError(f"acknowledgements asked for at {shown_value(value)}, not a handle")
                    ack_to = value
                    continue
                view = memoryview(value)
            except (codec.CodecError, TypeError, ValueError) as e:
                raise ProtocolError(f"{context.name}: malformed file data: {e}") from None
            received += len(value)
            while view:
                view = view[_locally(local_path, context, os.write, fd, view):]
            if ack_to is not None:
                core.send(Message(context.context_id, CONTROLLER_ID, ack_to,
                                  codec.encode(len(value))))
    except BaseException:
        if ack_to is not None and context.alive:  # the sender stops instead of waiting
            core.send(Message(context.context_id, CONTROLLER_ID, ack_to,
                              codec.encode(files.GAVE_UP)))
        raise
