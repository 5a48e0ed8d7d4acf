"""transport: a fast remote-execution transport for Python orchestration tools.

    import os, transport
    with transport.Router() as router:
        ctx = router.local()
        ctx.call(os.getpid)

The names below are loaded on first use, so a script pays at start-up only for
the parts it touches.
"""

from transport.errors import (
    AuthError,
    ConnectError,
    Disconnected,
    HostKeyError,
    ProtocolError,
    RemoteError,
    Timeout,
    TransportError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from transport.commands import CommandFailed, CommandResult
    from transport.context import Context, Job, JobStatus
    from transport.controller import Router
    from transport.group import Group, GroupResult, HostResult

_LOADED_ON_USE = {
    "CommandFailed": "transport.commands",
    "CommandResult": "transport.commands",
    "Context": "transport.context",
    "Group": "transport.group",
    "GroupResult": "transport.group",
    "HostResult": "transport.group",
    "Job": "transport.context",
    "JobStatus": "transport.context",
    "Router": "transport.controller",
}

__all__ = [
    "AuthError",
    "CommandFailed",
    "CommandResult",
    "ConnectError",
    "Context",
    "Disconnected",
    "Group",
    "GroupResult",
    "HostKeyError",
    "HostResult",
    "Job",
    "JobStatus",
    "ProtocolError",
    "RemoteError",
    "Router",
    "Timeout",
    "TransportError",
]


def __getattr__(name: str) -> object:
    module = _LOADED_ON_USE.get(name)
    if module is None:
        raise AttributeError(f"module 'transport' has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
