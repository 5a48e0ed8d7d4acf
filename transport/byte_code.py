"""Byte code of forwarded modules, for targets that run the controller's byte-code tag.

Compiling a large package is most of the cost of its first import on a target
(jinja2: ~70 ms of compiling against ~3 ms of unmarshalling here), so a
target whose interpreter has the controller's byte-code tag (magic number)
is sent each module's marshalled code beside its source (the source stays
for tracebacks). The code comes from the module's own __pycache__ when that
file is current for the source being sent (the checks the import system makes:
magic number, source modification time and size; and the file name compiled
in), else it is compiled here, once per process. Always at optimization level
0, what a target compiles itself by default.
"""

from __future__ import annotations

import marshal
import os

from transport.bootstrap import byte_code_tag

_compiled: dict[tuple[str, int, int], bytes | None] = {}


def _cached_file_code(origin: str, source: bytes) -> bytes | None:
    """The marshalled code in origin's __pycache__ if it was compiled from this very source."""
    import importlib.util

    try:
        pyc = importlib.util.cache_from_source(origin, optimization="")
        with open(pyc, "rb") as f:
            data = f.read()
        stat = os.stat(origin)
    except (OSError, ValueError, NotImplementedError):
        return None
    if (len(data) < 16 or data[:4].hex() != byte_code_tag() or data[4:8] != b"\0\0\0\0"  # not hash-based
            or int.from_bytes(data[8:12], "little") != int(stat.st_mtime) & 0xFFFFFFFF
            or int.from_bytes(data[12:16], "little") != len(source) & 0xFFFFFFFF
            or stat.st_size != len(source)):
        return None
    try:
        code = marshal.loads(data[16:])
    except (EOFError, ValueError, TypeError):
        return None
    return data[16:] if getattr(code, "co_filename", None) == origin else None


def byte_code_of(origin: str, source: bytes) -> bytes | None:
    """The marshalled code of the module at origin whose source is `source`; None if
    the source does not compile (the target's import then says why, as it would
    without byte code)."""
    key = (origin, len(source), hash(source))
    if key in _compiled:
        return _compiled[key]
    code = _cached_file_code(origin, source)
    if code is None:
        try:
            code = marshal.dumps(compile(source, origin, "exec", dont_inherit=True, optimize=0))
        except (SyntaxError, ValueError):
            code = None
    _compiled[key] = code
    return code
