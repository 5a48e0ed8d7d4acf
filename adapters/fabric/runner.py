"""FabricRunner: the transport runner as Fabric's Connection uses it.

Commands run under the remote user's login shell, as sshd runs them for
stock Fabric, and results are fabric.runners.Result (with .connection).
"""

from __future__ import annotations

from typing import Any

from fabric.runners import Result

import transport
from adapters.invoke.runner import TransportRunner


class FabricRunner(TransportRunner):
    """TransportRunner for a Connection: runs on its context, or on .target (sudo)."""

    def resolve_target(self) -> transport.Context:
        return self.context.transport_context()

    def shell_argv(self, shell: str, command: str) -> list[str]:
        return [self.context.login_shell(self.target), "-c", command]

    def generate_result(self, **kwargs: Any) -> Result:
        kwargs["connection"] = self.context
        return Result(**kwargs)
