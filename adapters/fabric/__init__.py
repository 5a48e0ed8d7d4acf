"""Fabric adapter: `fab -H web1,web2 deploy` with every task's Connection on the transport.

Opt in with one key in the fabric.yaml next to the fabfile (or ~/.fabric.yaml,
or a file given to `fab -f`):

    tasks:
      executor_class: adapters.fabric.Executor

Fabfiles without it run on stock Fabric, untouched. Scripts that use Fabric as a
library import Connection, SerialGroup and ThreadingGroup from here instead of
from fabric. Importing this package checks the Fabric and invoke versions it was
built against.
"""

from __future__ import annotations

from adapters.fabric.compat import check_fabric_version

check_fabric_version()

from adapters.fabric.connection import Connection, SudoAuthFailure  # noqa: E402
from adapters.fabric.executor import ConnectionCall, Executor  # noqa: E402
from adapters.fabric.file_transfer import TransportSFTP  # noqa: E402
from adapters.fabric.group import SerialGroup, ThreadingGroup  # noqa: E402
from adapters.fabric.runner import FabricRunner  # noqa: E402

__all__ = ["Connection", "ConnectionCall", "Executor", "FabricRunner", "SerialGroup",
           "SudoAuthFailure", "ThreadingGroup", "TransportSFTP"]
