"""SerialGroup and ThreadingGroup: Fabric's groups, made of transport Connections.

For scripts that use Fabric as a library: importing these (and Connection) from
adapters.fabric instead of fabric puts every host of the group on the transport;
the groups behave as Fabric's own (GroupResult, GroupException, closing).
"""

from __future__ import annotations

from typing import Any

import fabric

from adapters.fabric.connection import Connection


class SerialGroup(fabric.SerialGroup):
    """fabric.SerialGroup("web1", "web2", user=...) with each host on the transport."""

    def __init__(self, *hosts: str, **kwargs: Any) -> None:
        super().__init__()
        self.extend([Connection(host, **kwargs) for host in hosts])


class ThreadingGroup(fabric.ThreadingGroup):
    """fabric.ThreadingGroup("web1", "web2", user=...) with each host on the transport."""

    def __init__(self, *hosts: str, **kwargs: Any) -> None:
        super().__init__()
        self.extend([Connection(host, **kwargs) for host in hosts])
