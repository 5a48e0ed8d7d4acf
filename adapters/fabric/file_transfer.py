"""TransportSFTP: the file-transfer object Fabric's Transfer expects, backed by the transport.

Fabric's own put/get keep their path logic (remote directories, local path
interpolation, preserve_mode); they reach the host only through the few
SFTPClient methods implemented here, which use Context.put/get (streamed,
uncompressed, put in place only when complete) and calls of os functions on the target.
"""

from __future__ import annotations

import builtins
import os
import posixpath
import re
import shutil
import tempfile
from typing import IO

import transport
from transport.core import files

SPOOL_CHUNK = 1024 * 1024


def local_os_error(context: transport.Context, error: transport.RemoteError) -> Exception:
    """A remote OSError as the same local type with its errno (what paramiko's SFTP
    raises: `e.errno == errno.ENOENT` checks work), naming the host."""
    kind = getattr(builtins, error.remote_type.rpartition(".")[2], None)
    if not (isinstance(kind, type) and issubclass(kind, OSError)):
        return error
    coded = re.match(r"\[Errno (\d+)\] (.*)\Z", error.remote_message, re.S)
    if coded is None:
        return kind(f"{context.name}: {error.remote_message}")
    return kind(int(coded.group(1)), f"{context.name}: {coded.group(2)}")


class TransportSFTP:
    """The subset of paramiko's SFTPClient that fabric.transfer.Transfer uses."""

    def __init__(self, context: transport.Context) -> None:
        self.context = context

    def getcwd(self) -> None:
        return None  # like a fresh SFTP session: paths are relative to normalize(".")

    def normalize(self, path: str) -> str:
        return self.context.call(posixpath.abspath, path)

    def stat(self, path: str) -> os.stat_result:
        try:
            fields = self.context.call(files.path_stat, path)
        except transport.RemoteError as e:
            raise local_os_error(self.context, e) from None
        return os.stat_result(tuple(fields)[:10])

    def chmod(self, path: str, mode: int) -> None:
        try:
            self.context.call(files.change_mode, path, mode)
        except transport.RemoteError as e:
            raise local_os_error(self.context, e) from None

    # Like SFTP's open-and-write, a transfer writes an existing file in place (its inode
    # stays: a file bind-mounted into a container is still the container's) and leaves
    # its mode alone (Fabric's Transfer applies preserve_mode itself, with chmod).

    def put(self, localpath: str, remotepath: str) -> os.stat_result:
        try:
            self.context.put(localpath, remotepath, preserve_mode=False, in_place=True)
        except transport.RemoteError as e:
            raise local_os_error(self.context, e) from None
        return self.stat(remotepath)

    def putfo(self, fl: IO, remotepath: str) -> os.stat_result:
        with tempfile.NamedTemporaryFile(prefix="transport-put-") as spool:
            while data := fl.read(SPOOL_CHUNK):  # text is sent as UTF-8, as paramiko does
                spool.write(data.encode() if isinstance(data, str) else data)
            if data is None:  # a non-blocking stream with nothing to read yet
                raise BlockingIOError(f"{remotepath}: the file object to send would block")
            spool.flush()
            try:
                self.context.put(spool.name, remotepath, preserve_mode=False, in_place=True)
            except transport.RemoteError as e:
                raise local_os_error(self.context, e) from None
        return self.stat(remotepath)

    def get(self, remotepath: str, localpath: str) -> None:
        try:
            self.context.get(remotepath, localpath, preserve_mode=False)
        except transport.RemoteError as e:
            raise local_os_error(self.context, e) from None

    def getfo(self, remotepath: str, fl: IO) -> int:
        with tempfile.TemporaryDirectory(prefix="transport-get-") as spool_dir:
            spool = os.path.join(spool_dir, "file")
            try:
                size = self.context.get(remotepath, spool)
            except transport.RemoteError as e:
                raise local_os_error(self.context, e) from None
            with open(spool, "rb") as f:
                shutil.copyfileobj(f, fl)
        return size

    def close(self) -> None:
        pass  # the context outlives transfers
