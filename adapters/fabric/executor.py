"""Executor: Fabric's executor with each host's Connection on the transport.

`fab` reads tasks.executor_class from the config and builds one of these;
it gives every per-host call our Connection (all tasks for a host share one
transport interpreter) and shuts every interpreter down when the run ends.
"""

from __future__ import annotations

from typing import Any

import fabric
from fabric.tasks import ConnectionCall as FabricConnectionCall

from adapters.fabric.connection import Connection
from adapters.targets import shared_targets


class ConnectionCall(FabricConnectionCall):
    """A per-host call whose context is our Connection."""

    def make_context(self, config: Any, *args: Any, **kwargs: Any) -> Connection:
        # *args: invoke 3 adds core_parse_result, which a Connection does not need.
        return Connection(**dict(self.init_kwargs, config=config))


class Executor(fabric.Executor):
    """fabric.Executor whose per-host calls run over the transport."""

    def parameterize(self, call: Any, connection_init_kwargs: dict[str, Any]) -> ConnectionCall:
        return call.clone(into=ConnectionCall, with_={"init_kwargs": connection_init_kwargs})

    def execute(self, *tasks: Any) -> Any:
        try:
            return super().execute(*tasks)
        finally:
            shared_targets().close()
