"""The exceptions transport raises: one hierarchy under TransportError.

Each names the failure and carries the host (or context name) it concerns,
so a message read in a log of many hosts still says where it happened.
"""

from __future__ import annotations

import sys

from transport.core.spawn import printable

if sys.version_info >= (3, 11):
    # concurrent.futures.TimeoutError is the builtin TimeoutError.
    _TIMEOUT_BASES: tuple[type, ...] = (TimeoutError,)
else:
    from concurrent.futures import TimeoutError as _FuturesTimeout

    _TIMEOUT_BASES = (TimeoutError, _FuturesTimeout)


# What a target wrote is shown on the operator's terminal: its control characters (an
# escape sequence could retitle or clear it) are shown as '?', but for line ends and tabs;
# the bytes of it that were not UTF-8 (surrogate escapes, which no terminal or strict
# stream takes) as \xNN, and other lone surrogates as '?'.
_CONTROLS = {code: "?" for code in [*range(0x20), *range(0x7f, 0xa0), *range(0xd800, 0xe000)]
             if chr(code) not in "\n\t"}
_CONTROLS.update({code: f"\\x{code - 0xdc00:02x}" for code in range(0xdc80, 0xdd00)})
MAX_REASON = 500


def shown(text: str, limit: int | None = None) -> str:
    """text a target wrote, safe to show on a terminal (lines and tabs kept); with a
    limit, cut to that many characters (and "...")."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return text.translate(_CONTROLS)


def shown_value(value: object, limit: int = 200) -> str:
    """A value a target sent, as an error shows it: its repr, cut to limit characters
    and safe to show on a terminal."""
    return shown(repr(value), limit)


class TransportError(Exception):
    """Base class of every error raised by transport."""


class ConnectError(TransportError):
    """A context could not be started; .host names it and .reason says why. Where the
    ssh client itself failed, .ssh_messages holds the lines it printed (blank ones left
    out), as it printed them."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason
        self.ssh_messages = ""


class AuthError(ConnectError):
    """Authentication was refused (ssh key or password, sudo or su password)."""


class HostKeyError(ConnectError):
    """The host's key is not the one known for it (.changed: a known key differs, which
    may mean a reinstalled host or someone in the middle) or none is known (.changed is
    False); nothing was sent to it."""

    def __init__(self, host: str, reason: str, changed: bool) -> None:
        super().__init__(host, reason)
        self.changed = changed


class RemoteError(TransportError):
    """The remote function raised. str() shows the remote traceback, and `.hint` (when
    not empty) the controller's explanation of a cause only it can see (transport.hints:
    a module it has only as compiled code, a package that needs a newer Python than the
    target's, a function the target's own copy of its module lacks, a failure in the
    module-level code of a called function's module)."""

    def __init__(self, host: str, remote_type: str, remote_message: str,
                 remote_traceback: str, hint: str = "") -> None:
        super().__init__(host, remote_type, remote_message, remote_traceback)
        self.host = host
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.hint = hint  # the controller's own explanation, if it has one

    def __str__(self) -> str:
        text = f"{shown(self.remote_type)}: {shown(self.remote_message)} (on {self.host})"
        if self.hint:
            text += f"\n({self.hint})"
        if self.remote_traceback:
            text += (f"\n\nRemote traceback from {self.host}:\n"
                     f"{shown(self.remote_traceback.rstrip())}")
        return text


class Disconnected(TransportError):
    """The context went away (exited, or its connection or an intermediary died)."""

    def __init__(self, host: str, reason: str) -> None:
        # A reason may come from a target (an intermediary's word, a dead reply's): one
        # line, at most MAX_REASON characters.
        reason = printable(reason, MAX_REASON)
        super().__init__(f"{host}: disconnected: {reason}")
        self.host = host
        self.reason = reason


class Timeout(TransportError, *_TIMEOUT_BASES):
    """A wait ran past its deadline; .host names the host it waited on (and starts the
    message). Also a TimeoutError and a concurrent.futures.TimeoutError."""

    def __init__(self, message: str, host: str | None = None) -> None:
        super().__init__(message if host is None else f"{host}: {message}")
        self.host = host


class ProtocolError(TransportError):
    """A peer sent something that is not valid protocol; the peer is not trusted further."""
