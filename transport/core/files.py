"""File transfer on a target: receiving (put) and sending (get), in windows.

A put's data travels as raw chunks on a handle of the transfer's own, a
get's as ('data', chunk) tuples; each chunk is acknowledged, so the sender
never has more than a window of data in flight and neither side ever holds a
whole file. A received file is written to a temporary file first and reaches
its destination only when its size checks out, so a failed or interrupted
transfer never leaves a partial file there. Where Linux allows it (O_TMPFILE,
Python 3) the temporary file has no name until then, so not even a killed
process leaves it behind; elsewhere it is a hidden file beside the destination,
which a target that loses its parent removes before it exits. Only the parent
side may write files here (the data handle accepts nothing else).

A new file, or an existing one that is nothing more than its name, is
replaced at once by renaming the temporary file (written beside it) into
place, after giving it the existing file's owner and group, extended
attributes (POSIX ACLs among them; where Python can read them: Python 3 on
Linux) and, unless a mode is given, mode. An existing file that is more than
that (other hard links to it, a mount point such as a bind-mounted
/etc/hosts, not a regular file, an owner or an attribute this user cannot
give a new file) or one in a directory this user cannot write (the temporary
file then goes to the temporary directory) is written in place instead, as
scp and sftp write every file: its inode and all it carries stay (its mode
changes only where this user may change it), and only that last local copy
could be cut short (the temporary file is then kept, and named in the
error).
A new file gets the mode new files get here (0666 less the umask). A put
with in_place (Fabric's, which stands for SFTP) writes every existing file in
place, as SFTP does: a file bind-mounted into a container's own mount
namespace, which this one cannot see as a mount point, stays the file the
container sees. An existing file this user may not write is refused before
any data moves, as scp refuses it.

Like writing the file in place would, a transfer writes through a symlink
to the file it points at (but, as the kernel's protected_symlinks rule says,
not through one in a sticky world-writable directory such as /tmp that
neither this user nor the directory's owner owns: another user may have
planted it). settle() does all this for both sides.
"""
from __future__ import absolute_import

import errno
import os
import stat

from transport.core import codec
from transport.core.compat import PY2, Empty, SimpleQueue, allocate_lock, binary
from transport.core.dispatch import send_to_caller
from transport.core.framing import Message
from transport.core.os_strings import os_string, path_string

CHUNK = 256 * 1024
ACK_TIMEOUT = 120.0
# The acknowledgement of a receiver that gives up on a transfer.
GAVE_UP = -1

# Temporary files of transfers under way: removed if this process loses its parent.
in_flight = set()
# Linux's files with no name until one is given them (os.link names them, from
# /proc, with follow_symlinks: Python 3.3+); None where there are none.
_NAMELESS = None if PY2 else getattr(os, 'O_TMPFILE', None)
# The temporary files (by the name they are to get) that have no name yet: a
# descriptor of this module's own keeps each.
_nameless = {}
_umask_lock = allocate_lock()


def _router():
    from transport.core import dispatch
    return dispatch.current.router


def open_temporary(path):
    """(fd, name): a new private file to receive path's data, beside path unless
    path's directory is closed to this user while path itself is a file it may
    write (then in the temporary directory, and settle() writes path in place)."""
    if path.endswith(os.sep) or os.path.isdir(path):  # refused before any data moves
        raise OSError(errno.EISDIR, 'Is a directory (the destination must name a file)', path)
    directory, name = os.path.split(os.path.abspath(path))
    try:
        return _create_in(directory, name)
    except OSError as e:
        failure = e
    if (failure.errno not in (errno.EACCES, errno.EPERM, errno.EROFS)
            or not (os.path.exists(path) and os.access(path, os.W_OK))):
        raise OSError(failure.errno, failure.strerror, path)  # named as scp names it
    return _create_in(os.environ.get('TMPDIR') or '/tmp', name)


def _create_in(directory, name):
    temporary = os.path.join(directory, '.%s.tp-%s.tmp' % (  # within NAME_MAX (255 bytes)
        _first_bytes(name, 200), ''.join('%02x' % b for b in bytearray(os.urandom(4)))))
    fd = _open_nameless(directory)
    if fd is None:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    else:
        _nameless[temporary] = os.dup(fd)
    in_flight.add(temporary)
    return fd, temporary


def _open_nameless(directory):
    """A new file in directory that has no name yet; None where the system or the file
    system has no such files."""
    if _NAMELESS is None or not os.path.isdir('/proc/self/fd'):
        return None
    try:
        return os.open(directory, _NAMELESS | os.O_RDWR, 0o600)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL):
            return None  # not on this file system (or kernel)
        raise


def _give_name(temporary):
    """Give a temporary file with no name yet the name it was to get."""
    fd = _nameless.pop(temporary, None)
    if fd is None:
        return
    fds = os.open('/proc/self/fd', os.O_RDONLY | os.O_DIRECTORY)
    try:  # (with no directory given, os.link calls link(), which follows no link)
        os.link(str(fd), temporary, src_dir_fd=fds, follow_symlinks=True)
    finally:
        os.close(fds)
        os.close(fd)


def _first_bytes(name, count):
    """As much of name as fits in count bytes on disk."""
    if PY2 or isinstance(name, bytes):
        return name[:count]
    return os.fsdecode(os.fsencode(name)[:count])  # a character cut in two stays bytes


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


def settle(temporary, path, mode, in_place=False):
    """Put the finished temporary file's data at path, by renaming it into place or by
    writing path in place (see the module's docstring; in_place: an existing file
    always, as SFTP writes it); mode None: a new file gets the default mode, an
    existing one keeps its own."""
    try:
        existing = os.stat(path)
    except OSError:
        existing = None
    beside = os.path.dirname(temporary) == os.path.dirname(os.path.abspath(path))
    file = _nameless.get(temporary, temporary)  # by its descriptor while it has no name
    if existing is None or (beside and not in_place and _can_stand_in(file, path, existing)):
        if mode is None:
            mode = stat.S_IMODE(existing.st_mode) if existing is not None else _new_file_mode()
        os.chmod(file, mode)
        _give_name(temporary)
        try:
            os.rename(temporary, path)
        except OSError as e:
            if existing is None or e.errno != errno.EBUSY:  # EBUSY: path is a mount point
                raise
        else:
            in_flight.discard(temporary)
            return
    _write_in_place(temporary, path, mode)
    discard(temporary)


# What a file's new content must not inherit: the kernel drops file capabilities
# whenever a file is written, so they go with a replaced file too.
_NOT_INHERITED = ('security.capability',)


def _can_stand_in(file, path, existing):
    """Whether the temporary file (its name or descriptor), given existing's owner,
    group and extended attributes, can replace path with nothing lost."""
    if not stat.S_ISREG(existing.st_mode) or existing.st_nlink > 1:
        return False
    if (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(file, existing.st_uid, existing.st_gid)
        except OSError:  # giving a file away needs root (or, for the group, membership)
            return False
    if not hasattr(os, 'listxattr'):  # Python 2, or a system without extended attributes
        return True
    try:
        for name in os.listxattr(path):
            if name not in _NOT_INHERITED:
                os.setxattr(file, name, os.getxattr(path, name))
    except OSError as e:
        return e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)  # none on that file system
    return True


def _write_in_place(temporary, path, mode):
    """Copy the temporary file's data into path itself. Nothing changes at path if it
    cannot be opened for writing (a pipe without a reader is refused, not waited for)
    or, for a regular file, made large enough; its mode changes where this user may
    change it. Should a write fail after all, the temporary file is kept, and named in
    the error: it holds the only whole copy of the data."""
    out = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        import fcntl
        fcntl.fcntl(out, fcntl.F_SETFL, fcntl.fcntl(out, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        st = os.fstat(out)
        regular = stat.S_ISREG(st.st_mode)
        nameless = _nameless.get(temporary)
        size = os.fstat(nameless).st_size if nameless is not None else os.path.getsize(temporary)
        if regular:  # a device or a pipe keeps its mode and cannot be truncated
            if size > st.st_size and hasattr(os, 'posix_fallocate'):
                try:
                    os.posix_fallocate(out, 0, size)  # a full disk shows here, not half-way
                except OSError as e:
                    os.ftruncate(out, st.st_size)  # as it was (C libraries may emulate it)
                    if e.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                        raise
            if mode is not None and stat.S_IMODE(st.st_mode) != mode:
                try:
                    os.fchmod(out, mode)
                except OSError as e:  # another user's file: its owner decides, as with scp
                    if e.errno != errno.EPERM:
                        raise
        try:  # over the old content, then cut what is left of it
            with _open_to_read(temporary) as source:
                while True:
                    chunk = source.read(CHUNK)
                    if not chunk:
                        break
                    _write_all(out, chunk)
            if regular:
                os.ftruncate(out, size)
                os.fsync(out)
        except (IOError, OSError) as e:
            _give_name(temporary)
            in_flight.discard(temporary)  # kept: discard() leaves it alone
            raise IOError('%s: %s (written in part; the whole new content is in %s)'
                          % (path, e.strerror, temporary))
    finally:
        os.close(out)


def _open_to_read(temporary):
    """The temporary file, open for reading from its start."""
    fd = _nameless.get(temporary)
    if fd is None:
        return open(temporary, 'rb')
    source = os.fdopen(os.dup(fd), 'rb')  # (the offset is shared: the writer's is at the end)
    source.seek(0)
    return source


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def discard(temporary):
    """Remove an unfinished temporary file (not one settled, or kept for an error)."""
    if temporary not in in_flight:
        return
    in_flight.discard(temporary)
    fd = _nameless.pop(temporary, None)
    if fd is not None:
        os.close(fd)  # a file without a name goes with its last descriptor
        return
    try:
        os.unlink(temporary)
    except OSError:
        pass


class _Receiver(object):
    def __init__(self, path, size, mode, ack_handle, caller, in_place):
        self.path = destination(path)
        if os.path.exists(self.path) and not os.access(self.path, os.W_OK):
            # A file this user may not write (mode 0444, say) is not replaced either.
            raise IOError(errno.EACCES, 'Permission denied', self.path)
        self.size = size
        self.mode = mode
        self.in_place = in_place
        self.ack_handle = ack_handle
        self.caller = caller
        self.received = 0
        self.error = None
        self.fd, self.temporary = open_temporary(self.path)

    def on_chunk(self, msg):
        """Broker thread: write the chunk, acknowledge it."""
        router = _router()
        if msg.is_dead:
            self.error = 'the sender went away'
            return
        if self.error is None:
            try:
                _write_all(self.fd, msg.data)
                self.received += len(msg.data)
            except OSError as e:
                self.error = '%s: %s' % (self.path, e.strerror)
        # Once a write has failed (a full disk), the sender is told to stop sending.
        acknowledged = len(msg.data) if self.error is None else GAVE_UP
        router.send(Message(self.caller, router.context_id, self.ack_handle,
                            codec.encode(acknowledged)))


_receivers = {}


def start_receive(path, size, mode, ack_handle, in_place=False):
    """Open a temporary file beside path for `size` bytes; return the data handle to send to.

    mode None: keep an existing file's mode; in_place: write an existing file in place
    (see settle).
    """
    router = _router()
    receiver = _Receiver(path_string(path), size, mode, ack_handle, _current_caller(),
                         in_place)
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
        receiver.error = ('received %d bytes of %d: the file changed size while it was sent'
                          % (receiver.received, receiver.size))
    if receiver.error is not None:
        discard(receiver.temporary)
        raise IOError(receiver.error)
    try:
        settle(receiver.temporary, receiver.path, receiver.mode, receiver.in_place)
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


def path_stat(path):
    """os.stat(path), for a path given as text in any encoding (see compat.os_string)."""
    return os.stat(os_string(path))


def change_mode(path, mode):
    """os.chmod(path, mode), for a path given as text in any encoding."""
    os.chmod(os_string(path), mode)


def path_call(name, path, *args):
    """os.<name>(path, *args) (lstat, mkdir, unlink ...), for a path given as text in
    any encoding: what the Fabric adapter's SFTP client asks for."""
    return getattr(os, name)(os_string(path), *args)


def real_path(path):
    """os.path.realpath, for a path given as text in any encoding (SFTP's normalize)."""
    return os.path.realpath(os_string(path))


def rename(old, new, replace=True):
    """os.rename; with replace=False an existing new is refused (EEXIST), as SFTP's RENAME
    refuses it."""
    old, new = os_string(old), os_string(new)
    if not replace and os.path.lexists(new):
        raise OSError(errno.EEXIST, 'File exists', new)
    os.rename(old, new)


def truncate(path, size):
    """os.truncate, which Python 2.7 lacks."""
    fd = os.open(os_string(path), os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def append(path, data):
    """Append data (bytes) to path, created if missing: a file opened for 'a' over SFTP."""
    fd = os.open(os_string(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        _write_all(fd, bytes(data))
    finally:
        os.close(fd)


def create(path, exclusive=False):
    """Create path, or empty an existing one: a file opened for 'w' over SFTP; with
    exclusive, refuse an existing one (EEXIST), as 'x' does."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    os.close(os.open(os_string(path), flags, 0o666))


def symlink(source, dest):
    os.symlink(os_string(source), os_string(dest))


def list_with_attributes(path):
    """[(name, lstat fields), ...] of a directory's entries, as SFTP's READDIR gives
    them (entries gone while listing are left out)."""
    path = os_string(path)
    entries = []
    for name in os.listdir(path):
        try:
            st = os.lstat(os.path.join(path, name))
        except OSError:
            continue
        entries.append((name, tuple(st)[:10]))
    return entries


def _open_to_send(path):
    """(file, permission bits) of a file to send, which send() reads to its end, as an
    SFTP get reads it: a file still growing, one of /proc's (whose size says 0), a
    device. Opened without waiting, and refused for a directory, pipe or socket (a pipe
    would wait for a writer)."""
    fd = os.open(path_string(path), os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IOError(errno.EISDIR, 'Is a directory', path)
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            raise IOError(errno.EINVAL, 'Is a pipe or socket, not a file to read', path)
        import fcntl
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, 'rb'), stat.S_IMODE(st.st_mode)
    except BaseException:
        os.close(fd)
        raise


def send(path, data_handle, window):
    """Send path's content as chunks to data_handle, at most `window` bytes
    unacknowledged; return (bytes sent, the file's permission bits)."""
    router = _router()
    acks = SimpleQueue()
    ack_handle = router.add_parent_handler(acks.put)
    send_to_caller(data_handle, codec.encode(('ack', ack_handle)))
    unacknowledged = 0
    total = 0
    try:
        f, mode = _open_to_send(path)
        with f:
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
    return total, mode
