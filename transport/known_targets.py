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

from transport import disk_cache


def _path(key: str) -> str:
    # Two checksums name the file (hashlib would cost the controller's import ~5 ms);
    # the file repeats the key, so a clash is only a miss.
    data = key.encode("utf-8", "surrogateescape")
    return os.path.join(disk_cache.cache_dir(), "targets", f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}")


def remembered_tag(key: str) -> str | None:
    """The byte-code tag last seen for the target known as key, if any."""
    data = disk_cache.read(_path(key))
    if data is None:
        return None
    stored_key, _, tag = data.decode("ascii", "replace").partition("\n")
    if stored_key != key.replace("\n", " "):
        return None
    return tag.strip() or None


def remember_tag(key: str, tag: str | None) -> None:
    """Record the target's tag (None: it has none, e.g. Python 2.7)."""
    text = key.replace("\n", " ") + "\n" + (tag or "")
    disk_cache.write(_path(key), text.encode("ascii", "replace"))
