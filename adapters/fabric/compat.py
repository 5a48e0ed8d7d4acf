"""Which Fabric releases the adapter supports, checked when it is imported."""

from __future__ import annotations

from adapters.invoke.compat import check_invoke_version
from adapters.versions import check_version


def check_fabric_version() -> None:
    import fabric

    check_version("Fabric", fabric.__version__, (3, 0), (4, 0), "3.x")
    check_invoke_version()
