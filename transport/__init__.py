"""transport: a fast remote-execution transport for Python orchestration tools.

    import os, transport
    with transport.Router() as router:
        ctx = router.local()
        ctx.call(os.getpid)
"""

from transport.commands import CommandFailed, CommandResult
from transport.context import Context, Job, JobStatus
from transport.controller import Router
from transport.errors import (
    AuthError,
    ConnectError,
    Disconnected,
    ProtocolError,
    RemoteError,
    Timeout,
    TransportError,
)
from transport.group import Group, GroupResult, HostResult

__all__ = [
    "AuthError",
    "CommandFailed",
    "CommandResult",
    "ConnectError",
    "Context",
    "Disconnected",
    "Group",
    "GroupResult",
    "HostResult",
    "Job",
    "JobStatus",
    "ProtocolError",
    "RemoteError",
    "Router",
    "Timeout",
    "TransportError",
]
