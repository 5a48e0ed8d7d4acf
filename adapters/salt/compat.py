"""Which Salt releases the adapter supports, checked when its hooks are installed."""

from __future__ import annotations

from adapters.versions import check_version


def check_salt_version() -> None:
    import salt.version

    check_version("Salt", salt.version.__version__, (3006, 0), (3009, 0), "3006 to 3008")
