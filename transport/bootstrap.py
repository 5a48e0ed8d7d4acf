"""Building the bootstrap: the first stage and the compressed core payload.

The first stage is a few lines of Python passed with `python -c`. It reads
exactly `size` bytes of compressed payload from stdin (waiting with a
deadline, so a non-blocking stdin or a slow pipe is fine, and end of file is
an error, never a spin), installs the in-memory importer and calls
transport.core.main. It reads nothing more than the payload and writes
nothing back, so no step waits for a pipe to drain: a target whose pipes hold
4 KiB boots like any other.

The payload is the core's sources, comments and docstrings removed (line
numbers kept, so remote tracebacks stay true), as NUL-separated
name/source pairs, zlib-compressed. Stripping costs tens of milliseconds, so
the result is cached on disk under the hash of the sources it came from
(~/.cache/transport, or $XDG_CACHE_HOME); a controller process then pays for
reading and hashing the sources only, and builds the Bootstrap once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

CORE_DIR = Path(__file__).resolve().parent / "core"
IMPORTER = "transport.core.importer"
FIRST_STAGE_TIMEOUT = 60

FIRST_STAGE = """\
import os,select,sys,time,zlib
v=sys.version_info[:3]
if v[:2]<(2,7) or (3,0)<=v[:2]<(3,6):
 os.write(1,('\\ntp-unsupported-python %%d.%%d.%%d\\n'%%v).encode());sys.exit(1)
n=%(size)d;d=time.time()+%(timeout)d;b=b''
while len(b)<n:
 if not select.select([0],[],[],max(0,d-time.time()))[0]:sys.exit('transport: timed out reading the bootstrap')
 c=os.read(0,n-len(b))
 if not c:sys.exit('transport: end of file while reading the bootstrap')
 b+=c
p=zlib.decompress(b).split(b'\\0')
m=type(sys)('%(importer)s');sys.modules[m.__name__]=m
exec(compile(p[1],'<'+m.__name__+'>','exec'),m.__dict__)
m.install(p[2:])
__import__('transport.core.main');sys.modules['transport.core.main'].main(b)
"""


@dataclass(frozen=True)
class Bootstrap:
    """What boots a target: `first_stage` goes on the command line, `payload` to stdin."""

    payload: bytes
    first_stage: str
    source_bytes: int

    def python_argv(self, python: str) -> list[str]:
        """The argv that boots the core under interpreter `python`."""
        return [python, "-c", self.first_stage]


def strip_source(source: str) -> str:
    """Remove comments and docstrings, keeping every line where it was."""
    import io
    import tokenize

    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, int, str]] = []
    previous = tokenize.NEWLINE
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    module_start = True
    for tok in tokens:
        kind = tok.type
        if kind == tokenize.COMMENT:
            edits.append((*tok.start, *tok.end, ""))
        elif kind == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.NL):
            following = next(tokens)
            if following.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                # A docstring: the module's goes entirely (a __future__ import may
                # follow it); a function's or class's becomes a no-op constant.
                replacement = "" if module_start else "0"
                edits.append((*tok.start, *tok.end, replacement + "\n" * (tok.end[0] - tok.start[0])))
            kind = following.type
        if kind not in (tokenize.NL, tokenize.COMMENT, tokenize.ENCODING):
            module_start = False if kind not in (tokenize.NEWLINE,) else module_start
            previous = kind
        elif kind == tokenize.NL:
            previous = previous if previous != tokenize.NEWLINE else tokenize.NEWLINE
    for start_row, start_col, end_row, end_col, text in reversed(edits):
        first = lines[start_row - 1]
        last = lines[end_row - 1]
        lines[start_row - 1:end_row] = [first[:start_col] + text + last[end_col:]]
        if "\n" in text:
            lines[start_row - 1:start_row] = lines[start_row - 1].splitlines(keepends=True)
    stripped = "".join(lines)
    return "\n".join(line.rstrip() for line in stripped.split("\n"))


def core_module_names() -> list[str]:
    """Every module of the shipped core, the importer first."""
    names = sorted(f"transport.core.{p.stem}" for p in CORE_DIR.glob("*.py") if p.stem != "__init__")
    names.remove(IMPORTER)
    return [IMPORTER, *names]


def _module_path(name: str) -> Path:
    return CORE_DIR / (name.rpartition(".")[2] + ".py")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "transport"


def _compressed_payload(sources: list[tuple[str, str]]) -> tuple[bytes, int]:
    digest = hashlib.sha256()
    for name, source in sources:
        digest.update(name.encode() + b"\0" + source.encode() + b"\0")
    cached = _cache_dir() / f"payload-{digest.hexdigest()[:32]}.zlib"
    try:
        payload = cached.read_bytes()
        return payload, len(zlib.decompress(payload))
    except (OSError, zlib.error):
        pass
    parts: list[bytes] = []
    for name, source in sources:
        parts += [name.encode("ascii"), strip_source(source).encode("utf-8")]
    raw = b"\0".join(parts)
    payload = zlib.compress(raw, 9)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(payload)
        temporary.replace(cached)
    except OSError:
        pass  # an unwritable cache only costs the next process the same work
    return payload, len(raw)


@functools.lru_cache(maxsize=1)
def build() -> Bootstrap:
    """Build (once per process) the payload and the first stage that reads it."""
    sources = [(name, _module_path(name).read_text(encoding="utf-8"))
               for name in core_module_names()]
    payload, total = _compressed_payload(sources)
    code = FIRST_STAGE % {"size": len(payload), "timeout": FIRST_STAGE_TIMEOUT, "importer": IMPORTER}
    return Bootstrap(payload=payload, first_stage=f"exec({code!r})", source_bytes=total)
