"""Building the bootstrap: the first stage and the compressed core payloads.

The first stage is a few lines of Python passed with `python -c`. It first
takes the current directory off sys.path (where `-c` puts it), so no file
there stands in for a module, then reads a
fixed-size header and then exactly that many bytes of compressed payload
from stdin (waiting with a deadline, so a non-blocking stdin or a slow pipe
is fine, and end of file is an error, never a spin), installs the in-memory
importer and calls transport.core.main. It writes nothing back but markers
and reads nothing it was not sent, so no step waits for a pipe to drain: a
target whose pipes hold 4 KiB boots like any other.

The payload is the importer's source, then the core's other modules,
comments and docstrings removed and indentation shrunk to a space a level
(line numbers kept, so remote tracebacks stay true), zlib-compressed. The
same core also exists as this interpreter's marshalled byte code, which
spares a target compiling it at boot; the header tags it with the magic
number, and a first stage whose interpreter has another one drops it and
asks for the source instead (see docs/protocol.md, Boot). Building a payload
costs tens of milliseconds, so each is cached on disk (~/.cache/transport,
or $XDG_CACHE_HOME) under a key made of the sources' (and this builder's)
names, sizes and modification times, which the cache file repeats and which
is checked on reading; a controller process then pays for a few stat()
calls and one small read, once.
"""

from __future__ import annotations

import os
import sys
import zlib

from transport import disk_cache
from transport.core.forwarding import BYTE_CODE_TAG
from transport.core.handshake import PAYLOAD_HEADER_SIZE

CORE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "core")
IMPORTER = "transport.core.importer"
FIRST_STAGE_TIMEOUT = 60

FIRST_STAGE = """\
import sys
sys.path[:1]==['']and sys.path.pop(0)
import os,select,time,zlib
v=sys.version_info[:3]
e=bytes(bytearray([10,0]))
if v<(2,7) or (3,)<=v<(3,6):
 os.write(1,e[:1]+('tp-unsupported-python %%d.%%d.%%d'%%v).encode()+e[:1]);sys.exit(1)
t=sys.modules.get('_frozen_importlib_external');t=t.MAGIC_NUMBER.hex().encode() if t else b'-'
os.write(1,e+b'tp-first-stage'+e[::-1])
d=time.time()+%(timeout)d
def r(n):
 b=b''
 while len(b)<n:
  if not select.select([0],[],[],max(0,d-time.time()))[0]:sys.exit('transport: bootstrap timed out')
  c=os.read(0,n-len(b))
  if not c:sys.exit('transport: bootstrap cut short')
  b+=c
 return b
h=r(%(header)d).split()
if h[2] not in(b'source',t):
 os.write(1,e+b'tp-want-source'+e[::-1]);r(int(h[0])+int(h[1]));h=r(%(header)d).split()
p=zlib.decompress(r(int(h[0]))).split(e[1:],2)
m=type(sys)('%(importer)s');sys.modules[m.__name__]=m
exec(compile(p[1],'<'+m.__name__+'>','exec'),m.__dict__)
m.install(p[2])
__import__('transport.core.main');sys.modules['transport.core.main'].main()
"""


def byte_code_tag() -> str:
    """The tag of this interpreter's byte code (its magic number, hex): what a
    target's first stage compares with a compiled payload's tag, and what the
    core's hello and module forwarding call it (forwarding.BYTE_CODE_TAG, never
    None on the controller's Python 3)."""
    return BYTE_CODE_TAG


class Bootstrap:
    """What boots a target: `first_stage` goes on the command line, a payload to stdin.

    `payload` is the core as source, which every target can run; payloads()
    also offers it as this interpreter's byte code (compiled_payload()), which
    only a target with the same byte-code tag can run.
    """

    def __init__(self, payload: bytes, first_stage: str, source_bytes: int) -> None:
        self.payload = payload
        self.first_stage = first_stage
        self.source_bytes = source_bytes

    def payloads(self, byte_code: bool) -> tuple[tuple[str, bytes], tuple[str, bytes] | None]:
        """(first, fallback): what to send, each a (tag, payload) pair.

        byte_code=True: send the compiled core, with the source as the fallback for
        a first stage that finds another tag; otherwise the source alone.
        """
        source = ("source", self.payload)
        if byte_code:
            return (byte_code_tag(), compiled_payload()), source
        return source, None

    def python_argv(self, python: str | list[str], search_path: str | None = None) -> list[str]:
        """The argv that boots the core under interpreter `python`.

        python may be a list of candidates: the first one the host finds (on its PATH,
        or at that path) runs, as salt-ssh's shim looks for one; with none, the command
        says so on stderr and exits 127. search_path: the PATH to look on instead of the
        inherited one (see path_assignment); the interpreter starts with it too. Either
        makes the argv a /bin/sh that looks, then execs the interpreter in its place.
        """
        if isinstance(python, str) and search_path is None:
            return [python, "-c", self.first_stage]
        # The candidates travel as arguments ($1 ...), never inside the script; a path is
        # taken only if it is an executable file, a name only if the PATH has it.
        script = PYTHON_SEARCH if search_path is None else path_assignment(search_path) + PYTHON_SEARCH
        candidates = [python] if isinstance(python, str) else list(python)
        return ["/bin/sh", "-c", script, self.first_stage, *candidates]

    def shell_command(self, python: str | list[str], search_path: str | None = None) -> str:
        """python_argv as one POSIX shell command line (what ssh and su hand to a login shell)."""
        return shell_join(self.python_argv(python, search_path))


# sh -c PYTHON_SEARCH <first stage> <candidate> ...: run the first candidate found.
NONE_FOUND = "transport: no Python interpreter found"
PYTHON_SEARCH = (
    'for p in "$@"; do '
    'case $p in */*) [ -f "$p" ] && [ -x "$p" ] ;; *) command -v "$p" >/dev/null 2>&1 ;; esac '
    '&& exec "$p" -c "$0"; '
    f'done; echo "{NONE_FOUND} (tried: $*)" >&2; exit 127')


def path_assignment(value: str) -> str:
    """`PATH=<value>; export PATH; ` for a POSIX shell, expanding there what a shell expands
    in a PATH assignment: $NAME and ${NAME}, and ~ at the start of an entry (as $HOME).
    Everything else is single-quoted, so the value can never run a command."""
    words = []
    for index, entry in enumerate(value.split(":")):
        if index:
            words.append(":")
        if entry == "~" or entry.startswith("~/"):
            words.append('"${HOME}"')
            entry = entry[1:]
        literal, position = "", 0
        while position < len(entry):
            name, end = _variable_at(entry, position)
            if name is None:
                literal += entry[position]
                position += 1
                continue
            if literal:
                words.append(shell_quote(literal))
                literal = ""
            words.append(f'"${{{name}}}"')
            position = end
        if literal:
            words.append(shell_quote(literal))
    return "PATH=%s; export PATH; " % ("".join(words) or "''")


def _variable_at(text: str, position: int) -> tuple[str | None, int]:
    """(name, end) of a $NAME or ${NAME} reference at position, else (None, position)."""
    if text[position] != "$":
        return None, position
    braced = text.startswith("{", position + 1)
    start = position + 2 if braced else position + 1
    end = start
    while end < len(text) and (text[end] == "_" or text[end].isalnum() and text[end].isascii()):
        end += 1
    if end == start or text[start].isdigit():
        return None, position
    if braced:
        if not text.startswith("}", end):
            return None, position
        return text[start:end], end + 1
    return text[start:end], end


SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")


def shell_quote(arg: str) -> str:
    """arg as one word for a login shell: POSIX sh, bash, zsh, tcsh or fish (shlex.quote's
    rule, without importing re and enum into every controller, and fish's exception)."""
    if arg and set(arg) <= SHELL_SAFE:
        return arg
    quoted = arg.replace("'", "'\"'\"'")
    if "\\\\" in quoted or "\\'" in quoted or quoted.endswith("\\"):
        # fish reads \\ and \' inside single quotes as escapes (the others keep both
        # characters): each backslash then goes outside the quotes, escaped for all of them.
        quoted = quoted.replace("\\", "'\\\\'")
    return "'" + quoted + "'"


def shell_join(args: list[str]) -> str:
    """args as one POSIX shell command line (shlex.join's rule)."""
    return " ".join(shell_quote(arg) for arg in args)


def strip_source(source: str) -> str:
    """Remove comments and docstrings and shrink indentation, keeping every line where
    it was (remote tracebacks stay true, and show lines without their indentation)."""
    import io
    import tokenize

    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, int, str]] = []
    previous = tokenize.NEWLINE
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    module_start = True
    index = 0
    while index < len(tokens):
        tok = tokens[index]
        index += 1
        kind = tok.type
        if kind == tokenize.COMMENT:
            edits.append((*tok.start, *tok.end, ""))
        elif kind == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.NL):
            following = tokens[index]
            index += 1
            if following.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                # A docstring goes; one that is all of a function's or class's body
                # becomes a no-op constant, so the body is still there.
                replacement = "" if module_start or _body_goes_on(tokens, index) else "0"
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
    return _one_space_indents("\n".join(line.rstrip() for line in stripped.split("\n")))


def _body_goes_on(tokens: list, index: int) -> bool:
    """Whether a statement of the same block follows tokens[index:] (comments and blank
    lines aside)."""
    import tokenize

    for tok in tokens[index:]:
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            return tok.type not in (tokenize.DEDENT, tokenize.ENDMARKER)
    return False


def _one_space_indents(source: str) -> str:
    """source with one space of indentation per block level, and one before each
    continuation line; lines inside a string stay as they are (~4% off the payload)."""
    import io
    import tokenize

    depth = 0
    levels: dict[int, int] = {}  # first line of a statement -> its block depth
    in_strings: set[int] = set()  # lines a string token continues onto
    statement_starts = True
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NEWLINE:
            statement_starts = True
        elif tok.type not in (tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                in_strings.update(range(tok.start[0] + 1, tok.end[0] + 1))
            if statement_starts:
                levels[tok.start[0]] = depth
                statement_starts = False
    lines = source.split("\n")
    for number, line in enumerate(lines, 1):
        if number in in_strings or not line.strip():
            continue
        lines[number - 1] = " " * levels.get(number, 1) + line.lstrip(" \t")
    return "\n".join(lines)


# Core modules only some targets need: intermediaries (spawn, with handshake and relaying),
# detached jobs (jobs), file transfer (files), port forwarding (tunnels), commands,
# forwarded packages' data files (resources), log forwarding (logs), non-ASCII OS text on
# old Pythons (os_strings), set_baseline (baseline), preload checks (preloading) and
# asking the caller (asking). They are not in the payload; a target that
# needs one gets it by module forwarding (the controller preloads spawn into a context
# before asking it to connect a child, and sends the others ahead of the first call into
# them, in the same write, as it does for any module; the forwarder asks for resources
# when a package first reads a data file).
ON_DEMAND = frozenset({"transport.core.spawn", "transport.core.handshake",
                       "transport.core.jobs", "transport.core.files",
                       "transport.core.logs", "transport.core.commands",
                       "transport.core.resources", "transport.core.tunnels",
                       "transport.core.os_strings",
                       "transport.core.baseline", "transport.core.preloading",
                       "transport.core.asking", "transport.core.relaying",
                       "transport.core.stdio"})


# The payload's modules after the importer, in this order: deflate looks back only 32 KiB
# (the payload's source is ~57 KiB), so modules that share words compress best side by
# side. This order, found by trying orders, makes the payload ~200 bytes smaller than
# alphabetical; a module not listed goes last.
PAYLOAD_ORDER = ("router", "framing", "handles", "forwarding", "fresh", "dispatch", "main",
                 "stream", "codec", "poller", "broker", "compat", "poller_kqueue",
                 "poller_epoll", "poller_poll", "poller_select")


def core_module_names() -> list[str]:
    """Every module of the shipped core in the payload, the importer first."""
    names = [f"transport.core.{name[:-3]}" for name in os.listdir(CORE_DIR)
             if name.endswith(".py") and name != "__init__.py"]
    names.remove(IMPORTER)

    def place(name: str) -> tuple[int, str]:
        short = name.rpartition(".")[2]
        return (PAYLOAD_ORDER.index(short) if short in PAYLOAD_ORDER else len(PAYLOAD_ORDER), name)

    return [IMPORTER, *sorted((name for name in names if name not in ON_DEMAND), key=place)]


def _module_path(name: str) -> str:
    return os.path.join(CORE_DIR, name.rpartition(".")[2] + ".py")


def _cache_path(key: bytes) -> str:
    return os.path.join(disk_cache.cache_dir(), f"payload-{zlib.crc32(key):08x}.bin")


def _read_cache(path: str, key: bytes) -> bytes | None:
    data = disk_cache.read(path)
    if data is None:
        return None
    stored_key, _, payload = data.partition(b"\n\n")
    return payload if stored_key == key and payload else None


def build_payload(names: list[str], compiled: bool = False) -> bytes:
    """Strip and compress the named core modules (the importer first) into a payload.

    The importer travels as source; with compiled=True the others travel as this
    interpreter's marshalled byte code, for a target that runs this very interpreter.
    """
    def source_of(name: str) -> str:
        with open(_module_path(name), encoding="utf-8") as f:
            return strip_source(f.read())

    entries = []
    for name in names[1:]:
        source = source_of(name)
        if compiled:
            import marshal

            kind = b"c"
            data = marshal.dumps(compile(source, f"<{name}>", "exec", dont_inherit=True))
        else:
            kind, data = b"s", source.encode("utf-8")
        entries.append(b"%s %s %d\n" % (name.encode("ascii"), kind, len(data)) + data)
    head = [names[0].encode("ascii"), source_of(names[0]).encode("utf-8")]
    return zlib.compress(b"\0".join(head + [b"".join(entries)]), 9)


def _cached_payload(compiled: bool) -> tuple[bytes, int]:
    """The payload from the on-disk cache, or built and cached; and the sources' size."""
    names = core_module_names()
    stats = [os.stat(_module_path(name)) for name in names]
    key = ";".join(f"{name}:{st.st_size}:{st.st_mtime_ns}"
                   for name, st in zip(names, stats)).encode()
    builder = os.stat(os.path.abspath(__file__))  # how the payload is made counts too
    key += f";builder:{builder.st_size}:{builder.st_mtime_ns}".encode()
    if compiled:
        key += f";code:{sys.implementation.cache_tag}:{byte_code_tag()}".encode()
    path = _cache_path(key)
    payload = _read_cache(path, key)
    if payload is None:
        payload = build_payload(names, compiled)
        disk_cache.write(path, key + b"\n\n" + payload)
    return payload, sum(st.st_size for st in stats)


_built: dict[str, object] = {}  # once per process (functools would cost every controller ~2 ms)


def compiled_payload() -> bytes:
    """The core as this interpreter's byte code (once per process)."""
    payload = _built.get("compiled")
    if payload is None:
        payload = _built["compiled"] = _cached_payload(True)[0]
    return payload  # type: ignore[return-value]


def build() -> Bootstrap:
    """Build (once per process) the source payload and the first stage that reads it."""
    bootstrap = _built.get("bootstrap")
    if bootstrap is None:
        payload, source_bytes = _cached_payload(False)
        code = FIRST_STAGE % {"timeout": FIRST_STAGE_TIMEOUT, "importer": IMPORTER,
                              "header": PAYLOAD_HEADER_SIZE}
        bootstrap = _built["bootstrap"] = Bootstrap(payload, f"exec({code!r})", source_bytes)
    return bootstrap  # type: ignore[return-value]


def forget_built() -> None:
    """Drop what build() and compiled_payload() hold, so the next call reads the cache again."""
    _built.clear()
