"""FabricRunner: the transport runner as Fabric's Connection uses it.

Commands run under the login shell of the user Fabric connects as, as sshd
runs them for stock Fabric (c.sudo's too: stock's sudo command line is read
by that shell, and the sudo user's may be nologin); results are
fabric.runners.Result (with .connection).
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
        return [self.context.login_shell(), "-c", command]

    def generate_result(self, **kwargs: Any) -> Result:
        kwargs["connection"] = self.context
        return Result(**kwargs)
