"""The Salt extension's entry point (group `salt.loader`): importing it installs the hooks.

Salt loads `salt.loader` entry points whenever it builds a loader; on a
salt-ssh master the first is the roster's, before any host is handled. On
minions and salt-ssh targets (Salt packs installed extensions into its thin
tarball) salt-ssh's client is not loaded, and nothing is installed.
"""

from __future__ import annotations

import sys


def loader_dirs() -> dict[str, list[str]]:
    """The entry point's callable: this extension adds no loader directories."""
    return {}


if "salt.client.ssh" in sys.modules:
    from adapters.salt.hooks import install

    install()
