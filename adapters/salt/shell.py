"""FastShell: what salt-ssh's Shell does (run a command, send a file), over the transport.

Salt's master-side wrappers use a Single's shell for raw commands and to send
files (state tarballs, files for cp.*); for a fast host those go through the
host's contexts: commands under /bin/sh -c as the roster user (stock runs
them over ssh, without sudo), files by Context.put (streamed, renamed into
place) where salt-call runs.
"""

from __future__ import annotations

import os
import posixpath
from typing import Callable

import transport


class FastShell:
    """The subset of salt.client.ssh.shell.Shell that Single and the wrappers use."""

    def __init__(self, context: Callable[[], transport.Context],
                 login_context: Callable[[], transport.Context], host: str) -> None:
        self._context = context
        self._login_context = login_context
        self.host = host

    def exec_cmd(self, cmd: str) -> tuple[str, str, int]:
        try:
            result = self._login_context().run(cmd)
        except transport.TransportError as e:
            return "", str(e), 255
        return result.text("stdout"), result.text("stderr"), result.exit_code

    def copy_id(self) -> tuple[str, str, int]:
        """salt-ssh's offer to install its key after a refused login: not for fast hosts."""
        return "", (f"{self.host}: installing salt-ssh's key is not supported with "
                    "transport: fast; give the roster entry a priv key the host accepts"), 1

    def send(self, local: str, remote: str, makedirs: bool = False) -> tuple[str, str, int]:
        try:
            context = self._context()
            if makedirs:  # as stock's mkdir -p: the umask decides the directories' mode
                context.call(os.makedirs, posixpath.dirname(remote), 0o777, True)
            # As scp: an existing file keeps its mode, a new one gets the source's.
            context.put(local, remote, preserve_mode=not context.call(os.path.lexists, remote))
        except transport.TransportError as e:
            return "", str(e), 1
        return "", "", 0
