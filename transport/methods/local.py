"""The local method: a child interpreter on this machine, no login involved."""

from __future__ import annotations

import errno
import sys

from transport.bootstrap import NONE_FOUND
from transport.core.spawn import GARBLED_HEADER, describe_status
from transport.errors import ConnectError, shown

# How much of what a failed start wrote an error shows (its end).
MAX_OUTPUT = 4000

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from transport.bootstrap import Bootstrap


class LocalMethod:
    """Start `python` (default: the controller's own interpreter) as a child; a list of
    candidates runs the first one found (a /bin/sh looks for it, then becomes it)."""

    host = "localhost"

    def __init__(self, python: str | list[str] | None = None) -> None:
        self.python = python or sys.executable

    def argv(self, bootstrap: Bootstrap) -> list[str]:
        return bootstrap.python_argv(self.python)

    def default_name(self) -> str:
        shown = self.python if isinstance(self.python, str) else ",".join(self.python)
        return f"local:{shown}"

    def runs_this_interpreter(self) -> bool:
        """Whether python is the controller's own interpreter (so byte code fits it)."""
        import os

        if not isinstance(self.python, str):
            return False  # which one runs is known only once it has
        try:
            return os.path.samefile(self.python, sys.executable)
        except OSError:
            return False

    def options(self) -> dict[str, Any]:
        return {}

    def connect_error(self, name: str, reason: str, details: dict[str, Any]) -> ConnectError:
        return python_start_error(name, self.python, reason, details)


def python_start_error(name: str, python: str | list[str], reason: str,
                       details: dict[str, Any], program: str | None = None,
                       login_shell: bool = False) -> ConnectError:
    """Explain a failed interpreter start: a missing path, or what the child said.

    program: what was started to run the interpreter (ssh, sudo), if not the
    interpreter itself: a program that could not be started is then named, not Python.
    login_shell: a login shell was to start it (ssh, su), which may be one that runs
    no command (/bin/false).
    """
    status = details.get("exit_status")
    output = "\n".join(t for t in (details.get("preamble"), details.get("stderr")) if t)
    if len(output) > MAX_OUTPUT:  # its end says why
        output = "..." + output[-MAX_OUTPUT:]
    output = shown(output)  # what the target wrote: no escape sequence reaches a terminal
    if program is not None and details.get("errno") is not None:  # reason: "cannot start ..."
        return ConnectError(name, reason + (not_found_advice(program)
                                            if details["errno"] == errno.ENOENT else ""))
    if details.get("errno") in (errno.ENOENT, errno.EACCES) or status in (126, 127) or (
            status is not None and "No such file" in output):
        where = f"{python!r}" if isinstance(python, str) else f"any of {', '.join(python)}"
        # The search's own line names the candidates again.
        output = "\n".join(line for line in output.splitlines() if not line.startswith(NONE_FOUND))
        return ConnectError(name, f"no usable Python interpreter at {where}"
                            + (f": {output}" if output else ""))
    what = f"{python!r}" if isinstance(python, str) else "the interpreter found"
    if status is not None and details.get("first_stage") and not output:
        # It ran the first stage: it was stopped (kill, the OOM killer), not a wrong program.
        return ConnectError(name, f"{what} started, then {describe_status(status)} before it "
                                  "was ready")
    if status is not None and status >= 0 and not output:
        # The first stage always says something, or fails, and Python says why it failed.
        if login_shell and status:
            return ConnectError(name, f"{what} exited at once (status {status}) without "
                                      "running the bootstrap, or the login shell did not start "
                                      "it: is it a Python interpreter, and the user's shell one "
                                      "that runs commands (not /bin/false)?")
        return ConnectError(name, f"{what} exited at once (status {status}) without running "
                                  "the bootstrap: is it a Python interpreter?")
    if output:
        reason = f"{reason}:\n{output}"
    if reason.startswith(GARBLED_HEADER) or _garbled_bootstrap(output):
        reason += ("\nThe bootstrap reached Python garbled or cut short: something on the "
                   "target read from its stdin first (a shell startup file, such as a "
                   "~/.bashrc running a command that reads input: give it </dev/null).")
    return ConnectError(name, reason)


def not_found_advice(program: str) -> str:
    """What to check when `program` was not found where it was to start."""
    return f" (is {program} installed there, and on the PATH it starts with?)"


def check_secret(what: str, secret: str | None) -> None:
    """Refuse a password or passphrase that is not one line of text (the tool that reads
    it reads a line: the rest would reach the interpreter as its boot). Never shown."""
    if secret is not None and (not isinstance(secret, str) or any(c in secret for c in "\n\r\0")):
        raise ValueError(f"{what} is a str of one line")


def program_not_found(name: str, program: str, said: str) -> ConnectError:
    """`program` was not found by what was to start it (env before su, the shell that
    gives ssh its pid): named, with what was said and what to check."""
    return ConnectError(name, f"cannot start {program}: {said}" + not_found_advice(program))


def _garbled_bootstrap(output: str) -> bool:
    """Whether the first stage failed reading what it was sent: a traceback of its own
    (`python -c` code is "<string>"; the core's modules have names of their own), or
    the end of its input before the bootstrap's."""
    first_stage_traceback = 'File "<string>"' in output and 'File "<transport.' not in output
    # Its own words start a line (a program that is not Python may echo the first stage,
    # which holds them too).
    cut_short = any(line.startswith("transport: bootstrap cut short")
                    for line in output.splitlines())
    return first_stage_traceback or cut_short
