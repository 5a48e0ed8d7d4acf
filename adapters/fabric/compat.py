"""Which Fabric releases the adapter supports, checked when it is imported."""

from __future__ import annotations

from adapters.invoke.compat import check_invoke_version, version_tuple

SUPPORTED_FABRIC = ((3, 0), (4, 0))


def check_fabric_version() -> None:
    import fabric

    low, high = SUPPORTED_FABRIC
    if not low <= version_tuple(fabric.__version__) < high:
        raise ImportError(f"the transport adapter supports Fabric {low[0]}.x; "
                          f"Fabric {fabric.__version__} is installed")
    check_invoke_version()
