"""Which invoke releases the adapter supports, checked when it is imported."""

from __future__ import annotations

from adapters.versions import check_version


def check_invoke_version() -> None:
    import invoke

    # 2.x is what Fabric 3 requires; 3.x changed make_context's signature.
    check_version("invoke", invoke.__version__, (2, 0), (4, 0), "2.x and 3.x")
