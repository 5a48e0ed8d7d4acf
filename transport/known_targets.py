"""What the controller remembers about targets between runs: their byte-code tags.

A target whose interpreter has the controller's byte-code tag (magic number)
boots faster from byte code than from source (no compiling the core). The
tag is learned from a target's hello and kept in the controller's cache
directory, one small file per target, so the next connection to it (in this
process or a later one) can send byte code at once. A wrong memory costs
little: the first stage refuses the byte code and the source follows.
"""

from __future__ import annotations

import os
import zlib

from transport.bootstrap import cache_dir


def _path(key: str) -> str:
    # Two checksums name the file (hashlib would cost the controller's import ~5 ms);
    # the file repeats the key, so a clash is only a miss.
    data = key.encode("utf-8", "surrogateescape")
    return os.path.join(cache_dir(), "targets", f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}")


def remembered_tag(key: str) -> str | None:
    """The byte-code tag last seen for the target known as key, if any."""
    try:
        with open(_path(key), encoding="ascii") as f:
            stored_key, _, tag = f.read().partition("\n")
    except (OSError, ValueError):
        return None
    if stored_key != key.replace("\n", " "):
        return None
    return tag.strip() or None


def remember_tag(key: str, tag: str | None) -> None:
    """Record the target's tag (None: it has none, e.g. Python 2.7)."""
    path = _path(key)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="ascii", errors="replace") as f:
            f.write(key.replace("\n", " ") + "\n" + (tag or ""))
        os.replace(temporary, path)
    except OSError:
        pass  # an unwritable cache only costs the next connection a compile
