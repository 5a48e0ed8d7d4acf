"""Target interpreters found on this machine: pyenv's versions and the system python3.

pyenv's shims are slow (~0.1 s a start), so interpreters are named by their real
paths under $(pyenv root)/versions.
"""

from __future__ import annotations

import glob
import os

# Every target Python the core supports: a missing one fails the suite, never shrinks it.
REQUIRED = ("2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13")


def pyenv_root() -> str:
    return os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")


def find_interpreters() -> dict[str, str]:
    """Map 'X.Y' to an interpreter path, for each required version found, plus 'system'."""
    found: dict[str, str] = {}
    for version in REQUIRED:
        candidates = sorted(glob.glob(os.path.join(pyenv_root(), "versions", f"{version}.*",
                                                   "bin", f"python{version}")))
        if candidates:
            found[version] = candidates[-1]
    if os.access("/usr/bin/python3", os.X_OK):
        found["system"] = "/usr/bin/python3"
    return found


def missing_required() -> list[str]:
    found = find_interpreters()
    return [v for v in REQUIRED if v not in found]


def install_hint(versions: list[str]) -> str:
    return ("target interpreters missing: " + ", ".join(versions) + ". Install them with pyenv, "
            "e.g. `pyenv install " + " ".join(versions) + "` (PYENV_ROOT=" + pyenv_root() + ")")
