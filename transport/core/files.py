"""File transfer on a target: receiving (put) and sending (get), in windows.

A put's data travels as raw chunks on a handle of the transfer's own, a
get's as ('data', chunk) tuples; each chunk is acknowledged, so the sender
never has more than a window of data in flight and neither side ever holds a
whole file. A received file is written under a temporary name beside its
destination and renamed into place only when its size checks out, so a
failed or interrupted transfer never leaves a partial file at the
destination; a target that loses its parent removes its unfinished
temporary files before it exits. Only the parent side may write files here
(the data handle accepts nothing else).

Like writing the file in place would, a transfer writes through a symlink
to the file it points at (but, as the kernel's protected_symlinks rule says,
not through one in a sticky world-writable directory such as /tmp that
neither this user nor the directory's owner owns: another user may have
planted it), and an existing file keeps its owner and group
(where this user may give them) and, unless a mode is given, its mode; a new
file gets the mode new files get here (0666 less the umask). settle() does
this for both sides.
"""
from __future__ import absolute_import

import errno
import os
import stat

from transport.core import codec
from transport.core.compat import Empty, SimpleQueue, allocate_lock, binary
from transport.core.dispatch import send_to_caller
from transport.core.framing import Message

CHUNK = 256 * 1024
ACK_TIMEOUT = 120.0
# The acknowledgement of a receiver that gives up on a transfer.
GAVE_UP = -1

# Temporary files of transfers under way: removed if this process loses its parent.
in_flight = set()
_umask_lock = allocate_lock()


def _router():
    from transport.core import dispatch
    return dispatch.current.router


def _temporary_beside(path):
    if path.endswith(os.sep) or os.path.isdir(path):  # refused before any data moves
        raise OSError(errno.EISDIR, 'Is a directory (the destination must name a file)', path)
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, '.%s.tp-%s.tmp' % (  # within NAME_MAX (255)
        name[:200], ''.join('%02x' % b for b in bytearray(os.urandom(4)))))
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    in_flight.add(temporary)
    return fd, temporary


def destination(path):
    """Where data for path goes: through a symlink, to the file it points at, unless
    the link may be another user's trap (see the module's docstring)."""
    if not os.path.islink(path):
        return path
    link = os.lstat(path)
    shared = os.stat(os.path.dirname(os.path.abspath(path)))
    if (shared.st_mode & stat.S_ISVTX and shared.st_mode & stat.S_IWOTH
            and link.st_uid not in (os.geteuid(), shared.st_uid)):
        raise OSError(errno.EACCES, 'Permission denied (a symlink in a shared directory, '
                      'owned by another user, is not followed)', path)
    return os.path.realpath(path)


def _new_file_mode():
    """0666 less the umask, read without setting it where Linux tells it (the umask is
    shared by every thread)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return 0o666 & ~int(line.split()[1], 8)
    except (IOError, OSError, ValueError):
        pass
    with _umask_lock:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def settle(temporary, path, mode):
    """Give the finished temporary file its mode (None: as described above) and an
    existing file's owner, then rename it to path."""
    try:
        existing = os.stat(path)
    except OSError:
        existing = None
    if existing is not None and (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(temporary, existing.st_uid, existing.st_gid)
        except OSError:
            pass  # giving a file away needs root (or, for the group, membership)
    if mode is None:
        mode = stat.S_IMODE(existing.st_mode) if existing is not None else _new_file_mode()
    os.chmod(temporary, mode)
    os.rename(temporary, path)
    in_flight.discard(temporary)


def discard(temporary):
    in_flight.discard(temporary)
    try:
        os.unlink(temporary)
    except OSError:
        pass


class _Receiver(object):
    def __init__(self, path, size, mode, ack_handle, caller):
        self.path = destination(path)
        self.size = size
        self.mode = mode
        self.ack_handle = ack_handle
        self.caller = caller
        self.received = 0
        self.error = None
        self.fd, self.temporary = _temporary_beside(self.path)

    def on_chunk(self, msg):
        """Broker thread: write the chunk, acknowledge it."""
        router = _router()
        if msg.is_dead:
            self.error = 'the sender went away'
            return
        if self.error is None:
            try:
                view = msg.data
                while view:
                    written = os.write(self.fd, view)
                    view = view[written:]
                self.received += len(msg.data)
            except OSError as e:
                self.error = '%s: %s' % (self.path, e.strerror)
        # Once a write has failed (a full disk), the sender is told to stop sending.
        acknowledged = len(msg.data) if self.error is None else GAVE_UP
        router.send(Message(self.caller, router.context_id, self.ack_handle,
                            codec.encode(acknowledged)))


_receivers = {}


def start_receive(path, size, mode, ack_handle):
    """Open a temporary file beside path for `size` bytes; return the data handle to send to.

    mode None: keep an existing file's mode (see settle).
    """
    router = _router()
    receiver = _Receiver(path, size, mode, ack_handle, _current_caller())
    handle = router.add_parent_handler(receiver.on_chunk)
    _receivers[handle] = receiver
    return handle


def finish_receive(handle):
    """Check the size, set the mode, rename into place; return the size written."""
    receiver = _receivers.pop(handle)
    _router().remove_handler(handle)
    try:
        try:
            os.fsync(receiver.fd)  # a full disk or quota may only show here
        finally:
            os.close(receiver.fd)
    except OSError as e:
        discard(receiver.temporary)
        raise IOError('%s: %s' % (receiver.path, e.strerror))
    if receiver.error is None and receiver.received != receiver.size:
        receiver.error = 'received %d bytes of %d' % (receiver.received, receiver.size)
    if receiver.error is not None:
        discard(receiver.temporary)
        raise IOError(receiver.error)
    try:
        settle(receiver.temporary, receiver.path, receiver.mode)
    except BaseException:
        discard(receiver.temporary)
        raise
    return receiver.received


def abort_receive(handle):
    receiver = _receivers.pop(handle, None)
    if receiver is not None:
        _router().remove_handler(handle)
        os.close(receiver.fd)
        discard(receiver.temporary)
    return True


def _current_caller():
    from transport.core import dispatch
    return dispatch.current.caller


def stat_for_send(path):
    """(size, mode) of a file to send; raises if it is not a regular file."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise IOError('%s is not a regular file' % path)
    return st.st_size, stat.S_IMODE(st.st_mode)


def send(path, data_handle, window):
    """Send path's content as chunks to data_handle, at most `window` bytes unacknowledged."""
    router = _router()
    acks = SimpleQueue()
    ack_handle = router.add_parent_handler(acks.put)
    send_to_caller(data_handle, codec.encode(('ack', ack_handle)))
    unacknowledged = 0
    total = 0
    try:
        with open(path, 'rb') as f:
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                while unacknowledged + len(chunk) > window:
                    try:
                        msg = acks.get(timeout=ACK_TIMEOUT)
                    except Empty:
                        raise IOError('the receiver acknowledged nothing for %ss' % (ACK_TIMEOUT,))
                    if msg.is_dead:
                        raise IOError('the receiver went away')
                    acknowledged = codec.decode(msg.data)
                    if acknowledged == GAVE_UP:
                        raise IOError('the receiver gave up')
                    unacknowledged -= acknowledged
                send_to_caller(data_handle, codec.encode(('data', binary(chunk))))
                unacknowledged += len(chunk)
                total += len(chunk)
    finally:
        router.remove_handler(ack_handle)
    return total
