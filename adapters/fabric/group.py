"""SerialGroup and ThreadingGroup: Fabric's groups, made of transport Connections.

For scripts that use Fabric as a library: importing these (and Connection) from
adapters.fabric instead of fabric puts every host of the group on the transport;
the groups behave as Fabric's own (GroupResult, GroupException, closing).
"""

from __future__ import annotations

from typing import Any

import fabric

from adapters.fabric.connection import Connection


class _TransportConnections:
    """Builds a Fabric group's Connections as the adapter's (Fabric's build its own)."""

    def __init__(self, *hosts: str, **kwargs: Any) -> None:
        super().__init__()  # an empty Fabric group
        self.extend([Connection(host, **kwargs) for host in hosts])  # type: ignore[attr-defined]


class SerialGroup(_TransportConnections, fabric.SerialGroup):
    """fabric.SerialGroup("web1", "web2", user=...) with each host on the transport."""


class ThreadingGroup(_TransportConnections, fabric.ThreadingGroup):
    """fabric.ThreadingGroup("web1", "web2", user=...) with each host on the transport."""
