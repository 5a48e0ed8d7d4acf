"""FastShell: what salt-ssh's Shell does (run a command, send a file), over the transport.

Salt's master-side wrappers use a Single's shell for raw commands and to send
files (state tarballs, files for cp.*); for a fast host those go through the
host's contexts: commands as the roster user, by their login shell named as
sshd names it, as stock runs them over ssh (without sudo); files by
Context.put (streamed, renamed into place) as the roster user too, as stock's
scp writes them, but for those in the thin_dir, which go where salt-call
runs (the sudo user's, on a sudo host).

A command reaches the login shell as it does through stock's Shell: that puts
it on an ssh command line, which it splits as a shell would (shlex; from a
`/bin/sh` on, the rest stays one word), and ssh joins the words with spaces.
So the backslash Single puts before each special character of a raw command
(`salt-ssh -r host 'df -h; uptime'`) comes off, and the host's shell reads the
command as the user typed it (remote_command()).
"""

from __future__ import annotations

import os
import posixpath
import shlex
from typing import Callable

import transport
from adapters.targets import login_shell
from transport.errors import shown


class FastShell:
    """The subset of salt.client.ssh.shell.Shell that Single and the wrappers use."""

    def __init__(self, context: Callable[[], transport.Context],
                 login_context: Callable[[], transport.Context], host: str,
                 thin_dir: str) -> None:
        self._context = context
        self._login_context = login_context
        self.host = host
        self.thin_dir = thin_dir

    def exec_cmd(self, cmd: str) -> tuple[str, str, int]:
        try:
            command = remote_command(cmd)
        except ValueError as e:  # stock's ssh command line would not split either
            return "", f"{self.host}: cannot run {cmd!r}: {e}", 255
        try:
            context = self._login_context()
            shell = login_shell(context)
            result = context.run([posixpath.basename(shell), "-c", command], executable=shell)
        except transport.TransportError as e:
            return "", str(e), 255
        return result.text("stdout"), result.text("stderr"), result.exit_code

    def copy_id(self) -> tuple[str, str, int]:
        """salt-ssh's offer to install its key after a refused login: not for fast hosts."""
        return "", (f"{self.host}: installing salt-ssh's key is not supported with "
                    "transport: fast; give the roster entry a priv key the host accepts"), 1

    def send(self, local: str, remote: str, makedirs: bool = False) -> tuple[str, str, int]:
        inside = posixpath.normpath(remote).startswith(posixpath.normpath(self.thin_dir) + "/")
        try:
            context = self._context() if inside else self._login_context()
            if makedirs:  # as stock's mkdir -p: the umask decides the directories' mode
                context.call(os.makedirs, posixpath.dirname(remote), 0o777, True)
            # As scp: an existing file keeps its mode, a new one gets the source's.
            context.put(local, remote, preserve_mode=not context.call(os.path.lexists, remote))
        except transport.RemoteError as e:  # as scp's: why (naming the path), no traceback
            return "", shown(e.remote_message), 1
        except transport.TransportError as e:
            return "", str(e), 1
        return "", "", 0


def remote_command(cmd: str) -> str:
    """The command line the login shell on the host gets for exec_cmd(cmd) on a stock host."""
    before, separator, after = cmd.partition("/bin/sh")
    if separator and "/bin/sh" not in after:
        return " ".join([*shlex.split(before), "/bin/sh " + after])
    return " ".join(shlex.split(cmd))
