"""Small Python packages written by tests, importable by the controller only."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path


@contextlib.contextmanager
def importable_tree(root: Path, files: dict[str, str], prefix: str):
    """Write files (relative path -> text) under root and put root on sys.path.

    On exit, root leaves sys.path and every module whose name starts with prefix
    leaves sys.modules, so later tests import afresh.
    """
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for module in [m for m in sys.modules if m.startswith(prefix)]:
            del sys.modules[module]
