"""TransportSFTP: paramiko's SFTPClient as Fabric users reach it, backed by the transport.

Fabric's own put/get keep their path logic (remote directories, local path
interpolation, preserve_mode); they reach the host only through SFTPClient
methods, implemented here with Context.put/get (streamed, uncompressed, put in
place only when complete) and calls of os functions on the target. c.sftp()
gives the same object, with the rest of SFTPClient's everyday methods (listdir,
listdir_attr, lstat, mkdir, rmdir, remove, rename, symlink, readlink, chown,
utime, truncate, chdir, open, listdir_iter), errors as the OSError (errno
included) paramiko raises. open() reads the whole file when opened for reading,
and writes (or appends) what was written when flushed or closed; it takes
paramiko's modes but '+'.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import posixpath
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from typing import IO, Any, Callable

import paramiko

import transport
from transport.core import files
from transport.errors import shown_value

SPOOL_CHUNK = 1024 * 1024
Progress = Callable[[int, int], Any]  # paramiko's callback(bytes so far, total bytes)


def local_os_error(context: transport.Context, error: transport.RemoteError) -> Exception:
    """A remote OSError as the same local type with its errno (what paramiko's SFTP
    raises: `e.errno == errno.ENOENT` checks work), naming the host. A 2.7 target's
    socket.error (an IOError there) is an OSError, as on Python 3."""
    module, _, name = error.remote_type.rpartition(".")
    kind = getattr(socket if module in ("socket", "_socket") else builtins, name, None)
    if not (isinstance(kind, type) and issubclass(kind, OSError)):
        return error
    coded = re.match(r"\[Errno (-?\d+)\] (.*)\Z", error.remote_message, re.S)
    if coded is None:
        return kind(f"{context.name}: {error.remote_message}")
    return kind(int(coded.group(1)), f"{context.name}: {coded.group(2)}")


class TransportSFTP:
    """paramiko's SFTPClient over the transport: what fabric.transfer.Transfer uses, and
    the everyday rest of it for c.sftp()."""

    def __init__(self, context: transport.Context) -> None:
        self.context = context
        self._cwd: str | None = None

    def __enter__(self) -> TransportSFTP:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return self.context.call(fn, *args)
        except transport.RemoteError as e:
            raise local_os_error(self.context, e) from None

    def _path(self, path: str) -> str:
        """path as the host sees it: relative to chdir()'s directory, as paramiko's are."""
        if self._cwd is None or posixpath.isabs(path):
            return path
        return posixpath.join(self._cwd, path)

    def getcwd(self) -> str | None:
        return self._cwd  # None, as a fresh SFTP session's: paths are relative to normalize(".")

    def chdir(self, path: str | None = None) -> None:
        if path is None:
            self._cwd = None
            return
        path = self.normalize(path)
        if not stat.S_ISDIR(self.stat(path).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, f"{self.context.name}: {path}: Not a directory")
        self._cwd = path

    def normalize(self, path: str) -> str:
        return self._call(files.real_path, self._path(path))

    def stat(self, path: str) -> os.stat_result:
        return self._stat_result(self._call(files.path_stat, self._path(path)))

    def lstat(self, path: str) -> os.stat_result:
        return self._stat_result(self._call(files.path_call, "lstat", self._path(path)))

    def _stat_result(self, fields: Any) -> os.stat_result:
        """A host's os.stat() answer, checked: ten numbers (whole but for the times)."""
        try:
            fields = tuple(fields)[:10]
            if len(fields) < 10 or not all(type(n) is int for n in fields[:7]) or not all(
                    type(n) in (int, float) for n in fields[7:]):
                raise ValueError
        except (TypeError, ValueError):
            raise transport.ProtocolError(f"{self.context.name}: malformed file status: "
                                          f"{shown_value(fields)}") from None
        return os.stat_result(fields)

    def listdir(self, path: str = ".") -> list[str]:
        return [name for name, _ in self._call(files.list_with_attributes, self._path(path))]

    def listdir_iter(self, path: str = ".", read_aheads: int = 50) -> Iterator[paramiko.SFTPAttributes]:
        return iter(self.listdir_attr(path))

    def listdir_attr(self, path: str = ".") -> list[paramiko.SFTPAttributes]:
        return [paramiko.SFTPAttributes.from_stat(self._stat_result(fields), name)
                for name, fields in self._call(files.list_with_attributes, self._path(path))]

    def chmod(self, path: str, mode: int) -> None:
        self._call(files.change_mode, self._path(path), mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self._call(files.path_call, "chown", self._path(path), uid, gid)

    def utime(self, path: str, times: tuple[float, float] | None) -> None:
        self._call(files.path_call, "utime", self._path(path), times)

    def truncate(self, path: str, size: int) -> None:
        self._call(files.truncate, self._path(path), size)

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self._call(files.path_call, "mkdir", self._path(path), mode)

    def rmdir(self, path: str) -> None:
        self._call(files.path_call, "rmdir", self._path(path))

    def remove(self, path: str) -> None:
        self._call(files.path_call, "unlink", self._path(path))

    unlink = remove

    def rename(self, oldpath: str, newpath: str) -> None:
        """As SFTP's RENAME: an existing newpath is refused (posix_rename replaces it)."""
        self._call(files.rename, self._path(oldpath), self._path(newpath), False)

    def posix_rename(self, oldpath: str, newpath: str) -> None:
        self._call(files.rename, self._path(oldpath), self._path(newpath))

    def symlink(self, source: str, dest: str) -> None:
        self._call(files.symlink, source, self._path(dest))

    def readlink(self, path: str) -> str:
        return self._call(files.path_call, "readlink", self._path(path))

    def open(self, filename: str, mode: str = "r", bufsize: int = -1) -> RemoteFile:
        return RemoteFile(self, filename, mode)

    file = open

    # Like SFTP's open-and-write, a transfer writes an existing file in place (its inode
    # stays: a file bind-mounted into a container is still the container's) and leaves
    # its mode alone (Fabric's Transfer applies preserve_mode itself, with chmod).

    # paramiko's keywords are taken: callback(bytes so far, total) is called once, when
    # the transfer is done (it moves in the transport's windows, not SFTP requests);
    # confirm=False skips the stat and returns empty attributes, as paramiko does.

    def put(self, localpath: str, remotepath: str, callback: Progress | None = None,
            confirm: bool = True) -> Any:
        try:
            size = self.context.put(localpath, self._path(remotepath), preserve_mode=False,
                                    in_place=True)
        except transport.RemoteError as e:
            raise local_os_error(self.context, e) from None
        return self._sent(remotepath, size, callback, confirm)

    def putfo(self, fl: IO, remotepath: str, file_size: int = 0,
              callback: Progress | None = None, confirm: bool = True) -> Any:
        with tempfile.NamedTemporaryFile(prefix="transport-put-") as spool:
            while data := fl.read(SPOOL_CHUNK):  # text is sent as UTF-8, as paramiko does
                spool.write(data.encode() if isinstance(data, str) else data)
            if data is None:  # a non-blocking stream with nothing to read yet
                raise BlockingIOError(f"{remotepath}: the file object to send would block")
            spool.flush()
            try:
                size = self.context.put(spool.name, self._path(remotepath),
                                        preserve_mode=False, in_place=True)
            except transport.RemoteError as e:
                raise local_os_error(self.context, e) from None
        return self._sent(remotepath, size, callback, confirm)

    def _sent(self, remotepath: str, size: int, callback: Progress | None,
              confirm: bool) -> Any:
        if callback is not None:
            callback(size, size)
        if not confirm:
            return paramiko.SFTPAttributes()
        attributes = self.stat(remotepath)
        if attributes.st_size != size:  # another writer at the same time
            raise OSError(f"size mismatch in put!  {attributes.st_size} != {size}")
        return attributes

    def get(self, remotepath: str, localpath: str, callback: Progress | None = None,
            prefetch: bool = True, max_concurrent_prefetch_requests: int | None = None) -> None:
        try:
            size = self.context.get(self._path(remotepath), localpath, preserve_mode=False)
        except transport.RemoteError as e:
            raise local_os_error(self.context, e) from None
        if callback is not None:
            callback(size, size)

    def getfo(self, remotepath: str, fl: IO, callback: Progress | None = None,
              prefetch: bool = True, max_concurrent_prefetch_requests: int | None = None) -> int:
        with tempfile.TemporaryDirectory(prefix="transport-get-") as spool_dir:
            spool = os.path.join(spool_dir, "file")
            try:
                size = self.context.get(self._path(remotepath), spool)
            except transport.RemoteError as e:
                raise local_os_error(self.context, e) from None
            with open(spool, "rb") as f:
                shutil.copyfileobj(f, fl)
        if callback is not None:
            callback(size, size)
        return size

    def close(self) -> None:
        pass  # the context outlives transfers


class RemoteFile(io.BufferedIOBase):
    """A file on the host as paramiko's SFTPFile is used: read() gives bytes, lines and
    iteration give text unless the mode has 'b'. For reading, its content is fetched
    when opened; what is written goes to the host when it is closed: 'w' and 'x' write
    the file (created when opened; 'x' refuses an existing one), 'a' appends to it."""

    def __init__(self, sftp: TransportSFTP, filename: str, mode: str) -> None:
        super().__init__()
        kind = mode.replace("b", "")
        if kind not in ("r", "w", "a", "x"):
            raise ValueError(f"mode {mode!r}: transport files are opened for reading or for "
                             "writing ('+' needs a stock fabric.Connection)")
        self.sftp, self.filename, self.mode = sftp, filename, mode
        self._kind = kind
        self._text = "b" not in mode
        self._buffer = tempfile.SpooledTemporaryFile(max_size=SPOOL_CHUNK)
        self._unsent = False
        if kind == "r":
            sftp.getfo(filename, self._buffer)
            self._buffer.seek(0)
        elif kind in ("w", "x"):  # created (or emptied) when opened, as there
            sftp._call(files.create, sftp._path(filename), kind == "x")

    def readable(self) -> bool:
        return self._kind == "r"

    def writable(self) -> bool:
        return self._kind != "r"

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._buffer.seek(offset, whence)

    def tell(self) -> int:
        return self._buffer.tell()

    def prefetch(self, file_size: int | None = None) -> None:
        pass  # the content is here already

    def set_pipelined(self, pipelined: bool = True) -> None:
        pass  # writes travel together, when the file is closed

    def stat(self) -> os.stat_result:
        return self.sftp.stat(self.filename)

    def read(self, size: int | None = -1) -> bytes:
        if not self.readable():
            raise io.UnsupportedOperation("not open for reading")
        return self._buffer.read(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> Any:
        line = self._buffer.readline(-1 if size is None else size)
        return line.decode("utf-8") if self._text else line

    def __iter__(self) -> Any:
        return iter(self.readline, "" if self._text else b"")

    def write(self, data: Any) -> int:
        if not self.writable():
            raise io.UnsupportedOperation("not open for writing")
        self._buffer.write(data.encode("utf-8") if isinstance(data, str) else data)
        self._unsent = True
        return len(data)

    def flush(self) -> None:
        """What was written goes to the host now, as paramiko's flush() sends it: the
        whole file so far ('w', 'x'), or what was written since ('a')."""
        if not self._unsent or self._buffer.closed:
            return
        if self._kind == "a":
            self._buffer.seek(0)
            self.sftp._call(files.append, self.sftp._path(self.filename), self._buffer.read())
            self._buffer.seek(0)
            self._buffer.truncate()
        else:
            position = self._buffer.tell()
            self._buffer.seek(0)
            self.sftp.putfo(self._buffer, self.filename, confirm=False)
            self._buffer.seek(position)
        self._unsent = False

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self._buffer.close()
            super().close()
