"""The controller's cache directory, and the rules every file in it keeps.

Everything the controller remembers between runs lives under one directory,
~/.cache/transport (or $XDG_CACHE_HOME/transport): boot payloads, import
scans, targets' byte-code tags, the salt adapter's file digests. Each entry is
a small file that is replaced whole (written beside and renamed, so a reader
sees the old one or the new one, never part of either) and rebuilt when it is
missing, so losing one costs only the work that made it; an unreadable or
unwritable cache costs the same and nothing else.

A file's modification time says when it was last used: read() brings it
forward (at most once a day per file). After writing a file, write() removes
the files of that directory that nobody used for UNUSED_DAYS (looking at most
once a day), so sources edited and upgraded over months leave no pile behind.
"""

from __future__ import annotations

import os
import time

UNUSED_DAYS = 30
DAY = 24 * 3600
PRUNED_MARK = ".pruned"  # in each directory: when it was last looked over


def cache_dir() -> str:
    """The controller's cache directory: $XDG_CACHE_HOME/transport or ~/.cache/transport."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "transport")


def read(path: str) -> bytes | None:
    """The file's bytes (None if it cannot be read), marking it as used."""
    try:
        with open(path, "rb") as f:
            data = f.read()
            stale = time.time() - os.fstat(f.fileno()).st_mtime > DAY
    except OSError:
        return None
    if stale:
        try:
            os.utime(path)
        except OSError:
            pass  # kept until pruned, then rebuilt: only the work again
    return data


def write(path: str, data: bytes) -> None:
    """Replace the file with data (or leave it, if the cache is not writable), then
    prune its directory if that is due."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        temporary = f"{path}.{os.getpid()}-{os.urandom(4).hex()}.tmp"
        try:
            with open(temporary, "wb") as f:
                f.write(data)
            os.replace(temporary, path)
        except BaseException:
            _remove(temporary)
            raise
    except OSError:
        return
    prune(directory)


def prune(directory: str, now: float | None = None) -> None:
    """Remove the directory's files unused for UNUSED_DAYS, unless it was done in the last day."""
    now = time.time() if now is None else now
    mark = os.path.join(directory, PRUNED_MARK)
    try:
        if now - os.stat(mark).st_mtime < DAY:
            return
    except OSError:
        pass
    try:
        with open(mark, "ab"):
            pass
        os.utime(mark, (now, now))
        entries = list(os.scandir(directory))
    except OSError:
        return
    oldest_kept = now - UNUSED_DAYS * DAY
    for entry in entries:
        try:
            if (entry.name != PRUNED_MARK and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < oldest_kept):
                _remove(entry.path)
        except OSError:
            pass


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
