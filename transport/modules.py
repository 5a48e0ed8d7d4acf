"""Serving modules to targets: the controller's side of module forwarding.

A target asks (GET_MODULE) for a module it cannot import itself. The
controller finds the module on its own sys.path WITHOUT importing anything
(PathFinder over the parent package's directories), reads its source, scans
it with ast for the modules it imports (cached per file), and answers with
the whole closure at once, so a package and its dependencies arrive in one
round trip. The answer never includes the standard library (a target has
its own), C extensions or byte-code-only modules (the target gets an
ImportError, so pure-Python fallbacks work; one that reaches the caller says
why: hints.import_error_hint), nor anything already sent to that context. Names
that are not dotted identifiers are refused.

A forwarded package's data files (GET_RESOURCE: certifi's cacert.pem,
templates) are read from the package's own directories on request, by
relative name; nothing outside them, nothing of the standard library.

The work runs on one worker thread, off the broker thread, so scanning a
large package never delays other traffic.
"""

from __future__ import annotations

import os
import posixpath
import sys
import zlib

from transport import disk_cache, log
from transport.bootstrap import byte_code_tag
from transport.byte_code import byte_code_of
from transport.core import codec, compat
from transport.core.framing import Message
from transport.core.handles import CONTROLLER_ID, GET_MODULE, GET_RESOURCE
from transport.core.relaying import ANSWER_BACKLOG, pack_entries, valid_module_name
from transport.core.router import accept_from_anyone

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from transport.core.router import Router as CoreRouter

MAIN_ALIAS = "__transport_main__"
MAX_RESOURCE_SIZE = 64 * 1024 * 1024
DETACHED_DATA_BUDGET = 32 * 1024 * 1024
# A request is held while more than this waits to be written to its asker (a context that
# asks but does not read cannot make us queue replies without end), and retried every
# HOLD_RETRY seconds; beyond MAX_HELD held requests from one context, more are dropped.
# Beyond MAX_WAITING requests from one context not yet served, more are dropped as they
# arrive (a flood of requests would otherwise grow without end and delay the others').
BACKLOG_LIMIT = ANSWER_BACKLOG
HOLD_RETRY = 0.05
MAX_HELD = 256
MAX_WAITING = 256
# ModuleServer.requested keeps what each context asked for (its round trips), up to this.
MAX_REQUESTED_KEPT = 1000
# A module name (512 characters at most) or a data file's name needs no more: a request's
# data beyond this is dropped on arrival (answered as malformed), not held.
MAX_REQUEST_BYTES = 8192
# Kept among the names sent to a context once the controller has sent it its script
# (under any name): only then may it ask for the script.
SCRIPT_SENT = "<the controller's script>"
Entry = tuple  # (fullname, kind, origin, source bytes)

_STDLIB_NAMES = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(sys.builtin_module_names)


def _stdlib_dirs() -> tuple[str, ...]:
    import sysconfig

    return tuple(os.path.realpath(sysconfig.get_paths()[key]) for key in ("stdlib", "platstdlib"))


def is_stdlib(fullname: str) -> bool:
    top = fullname.partition(".")[0]
    if top in _STDLIB_NAMES:
        return True
    if _STDLIB_NAMES:
        return False
    from importlib.machinery import PathFinder  # importlib: not at every controller's start

    spec = PathFinder.find_spec(top)  # Python 3.9: no sys.stdlib_module_names
    origin = os.path.realpath(spec.origin) if spec and spec.origin else ""
    return origin.startswith(_stdlib_dirs()) and "site-packages" not in origin


def _read_data(entry: Entry, name: str) -> tuple[str, Any]:
    """resource()'s answer for name inside the directory of package entry (see there)."""
    parts = name.split("/") if name else []
    if any(not part or part.startswith(".") or "\0" in part or os.sep in part for part in parts):
        return ("refused", f"not a relative path inside the package: {name!r}")
    if not os.path.exists(entry[2]):  # imported from a zip archive: app.pyz/pkg/__init__.py
        return _read_archived_data(entry, name, parts)
    base = os.path.realpath(os.path.dirname(entry[2]))
    path = os.path.join(base, *parts)
    if os.path.isdir(path):
        real = os.path.realpath(path)
        if real == base or real.startswith(base + os.sep):
            return ("ok", sorted(child + ("/" if os.path.isdir(os.path.join(real, child)) else "")
                                 for child in os.listdir(real)
                                 if child != "__pycache__" and not child.startswith(".")))
    elif os.path.isfile(path):
        directory = os.path.realpath(os.path.dirname(path))
        if directory == base or directory.startswith(base + os.sep):
            if os.path.getsize(path) > MAX_RESOURCE_SIZE:
                return ("refused", f"{name} is larger than {MAX_RESOURCE_SIZE} bytes")
            with open(path, "rb") as f:
                return ("ok", f.read())
    return ("refused", f"no data file {name!r} in {entry[0]}")


def _read_archived_data(entry: Entry, name: str, parts: list[str]) -> tuple[str, Any]:
    """resource()'s answer for a package imported from a zip archive: a file inside
    the archive, read through zipimport (already loaded: zipfile would import threading
    on this worker thread, which Python would then wait for at exit). A directory's
    listing is not given."""
    import zipimport

    directory = os.path.dirname(entry[2])
    try:
        data = (zipimport.zipimporter(directory).get_data("/".join([directory, *parts]))
                if parts else None)
    except (OSError, zipimport.ZipImportError):
        data = None
    if data is None:
        return ("refused", f"no data file {name!r} in {entry[0]}")
    if len(data) > MAX_RESOURCE_SIZE:
        return ("refused", f"{name} is larger than {MAX_RESOURCE_SIZE} bytes")
    return ("ok", data)


# Modules found on the controller only as compiled code (a C extension, or byte code
# without its source), which are never sent: what each is, so that a target's "No
# module named" for one can say why (hints.import_error_hint). Bounded by what is installed.
compiled_only: dict[str, str] = {}


def main_script_source() -> tuple[str, bytes] | None:
    """(path, source) of the script this process runs as __main__: a file (with or
    without .py: /usr/local/bin/deploy), or a zipapp's __main__.py; None without one
    (python -c, standard input, a REPL)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    if os.path.isfile(path):
        try:
            with open(path, "rb") as f:
                return path, f.read()
        except OSError:
            return None
    get_data = getattr(getattr(main, "__loader__", None), "get_data", None)
    if get_data is None or not path.endswith(".py"):
        return None
    try:
        return path, get_data(path)  # python app.pyz: app.pyz/__main__.py
    except OSError:
        return None


def is_main_script(entry: Entry) -> bool:
    """Whether entry is the script this process runs as __main__, under its alias (or a
    name below it) or under the module name its file also has (`deploy`, when
    `python deploy.py` put the script's directory on sys.path; `app.deploy` for
    `python -m app.deploy`)."""
    name, origin = entry[0], entry[2]
    if name == MAIN_ALIAS or name.startswith(MAIN_ALIAS + "."):
        return True
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or not origin:
        return False
    return origin == path or (os.path.basename(origin) == os.path.basename(path)
                              and os.path.realpath(origin) == os.path.realpath(path))


def _archived_source(spec: Any) -> bytes | None:
    """The source of a module imported from a zip archive on sys.path (a zipapp, a PEX,
    an egg), if the archive holds it (not only its byte code)."""
    import zipimport

    if not isinstance(spec.loader, zipimport.zipimporter) or not spec.origin.endswith(".py"):
        return None
    try:
        return spec.loader.get_data(spec.origin)
    except OSError:
        return None


class ModuleFinder:
    """Finds modules and their import closures on the controller's sys.path."""

    def __init__(self) -> None:
        from transport.bootstrap import ON_DEMAND, core_module_names

        # What every target has from its boot payload: never worth sending. What its
        # modules import on demand (dispatch.ask_caller needs asking) goes along with
        # a module that imports them: the target may not be able to ask later (inside
        # forwarding.local_imports_only, or in a fork).
        self.booted_modules = frozenset(core_module_names())
        self.booted = frozenset(["transport", "transport.core", *self.booted_modules])
        self.on_demand = ON_DEMAND
        self._on_demand_imports: dict[str, list[tuple[str, bool]]] = {}

    def entry(self, fullname: str) -> Entry:
        from importlib.machinery import ExtensionFileLoader, SourceFileLoader

        missing = (fullname, "missing", None, None)
        if not valid_module_name(fullname):
            return ("<invalid>", "missing", None, None)
        if fullname == MAIN_ALIAS:
            return self._main_entry()
        if is_stdlib(fullname):
            return missing
        spec = self._find_spec(fullname)
        if spec is None:
            return missing
        if spec.loader is None or spec.origin in (None, "namespace"):
            return (fullname, "namespace", None, None) if spec.submodule_search_locations else missing
        if isinstance(spec.loader, SourceFileLoader):
            try:
                with open(spec.origin, "rb") as f:
                    source = f.read()
            except OSError:
                return missing
        else:
            source = _archived_source(spec)
            if source is None:
                compiled_only[fullname] = ("a C extension"
                                           if isinstance(spec.loader, ExtensionFileLoader)
                                           else "byte code without its source")
                return missing
        kind = "package" if spec.submodule_search_locations is not None else "module"
        return (fullname, kind, spec.origin, source)

    def resource(self, package: Any, name: Any) -> tuple[str, Any]:
        """A data file of a package a target may be sent, by name ('/'-separated below the
        package's directory; '' is the directory itself): ('ok', its bytes), ('ok', a
        listing) for a directory (names; directories end in '/'), or ('refused', why).

        Only regular packages the controller forwards (a directory with an __init__.py:
        not a namespace package, which any directory on sys.path could pass for), never
        the standard library, and nothing outside the package's directory: no absolute
        names, no '..', no hidden names (starting with '.'), no directory reached through
        a symlink (a file that is a symlink, as Debian's certifi/cacert.pem is, is read).
        """
        entry = self.entry(package) if isinstance(name, str) else None
        if entry is None or entry[1] != "package":
            return ("refused", f"{package!r} is not a package the controller sends")
        return _read_data(entry, name)

    def data_files(self, module: str, budget: int = DETACHED_DATA_BUDGET) -> dict[tuple, Any]:
        """The data files of the packages in module's closure, as resource() answers them,
        by (package, name), directories' listings included: what a detached job may read.

        Python files (sent as modules) and subpackages' files (walked as packages of
        their own) are left out; so is what goes beyond budget bytes, with a warning.
        """
        files: dict[tuple, Any] = {}
        total = 0
        left_out: list[str] = []
        for entry in self.closure(module, set()):
            if entry[1] != "package":
                continue
            pending = [""]
            while pending:
                name = pending.pop()
                status, value = _read_data(entry, name)
                if status != "ok":
                    continue
                if isinstance(value, list):
                    files[(entry[0], name)] = value  # (a subpackage's: what pkgutil lists)
                    if name and "__init__.py" in value:
                        continue  # a subpackage, walked as a package of its own
                    pending += [posixpath.join(name, child.rstrip("/")) for child in value
                                if child.endswith("/") or not child.endswith((".py", ".pyc"))]
                elif total + len(value) > budget:
                    left_out.append(f"{entry[0]}:{name}")
                else:
                    files[(entry[0], name)] = value
                    total += len(value)
        if left_out:
            log.warning("transport", "%d data files beyond %d bytes are not sent ahead of a "
                        "detached job (%s ...)", len(left_out), budget, left_out[0])
        return files

    def _find_spec(self, fullname: str) -> Any:
        """Find without importing: walk the parent packages' search paths."""
        from importlib.machinery import ModuleSpec, PathFinder

        parent, _, name = fullname.rpartition(".")
        if not parent:
            # sys.path first; then the other finders (a package installed in editable
            # mode is found by one of its own). A top-level find imports nothing.
            spec = PathFinder.find_spec(fullname)
            if spec is None:
                import importlib.util  # here: it would weigh on every controller's start

                try:
                    spec = importlib.util.find_spec(fullname)
                except (ImportError, ValueError):
                    spec = None
            return spec
        loaded = sys.modules.get(parent)
        path = getattr(loaded, "__path__", None)
        if path is None:
            parent_spec = self._find_spec(parent)
            if parent_spec is None or parent_spec.submodule_search_locations is None:
                return None
            path = parent_spec.submodule_search_locations
        locations = list(path)
        try:
            return PathFinder.find_spec(fullname, locations)
        except KeyError:
            # A namespace package inside one that is not imported here: importlib
            # would look its parent up in sys.modules, so describe it ourselves.
            found = [os.path.join(p, name) for p in locations if os.path.isdir(os.path.join(p, name))]
            if not found:
                return None
            spec = ModuleSpec(fullname, None, is_package=True)
            spec.submodule_search_locations = found
            return spec

    def submodules(self, package: str) -> list[str]:
        """The modules and packages directly inside package, found without importing it."""
        import pkgutil

        spec = self._find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return []
        return [f"{package}.{info.name}"
                for info in pkgutil.iter_modules(list(spec.submodule_search_locations))]

    def _main_entry(self) -> Entry:
        found = main_script_source()
        if found is None:
            return (MAIN_ALIAS, "missing", None, None)
        return (MAIN_ALIAS, "module", *found)

    def imports_of(self, entry: Entry) -> list[tuple[str, bool]]:
        """(name, certain) for each module entry's source imports; cached per file."""
        fullname, kind, origin, source = entry
        key = f"{fullname}|{kind}|{origin}|{len(source)}|{zlib.crc32(source):08x}"
        cached = SCANS.get(key)
        if cached is None:
            cached = _scan(fullname, kind == "package", source)
            SCANS.put(key, cached)
        return cached

    def _on_demand_imports_of(self, booted: str) -> list[tuple[str, bool]]:
        """What a boot-payload module imports from the on-demand core (read once)."""
        found = self._on_demand_imports.get(booted)
        if found is None:
            found = self._on_demand_imports[booted] = [
                item for item in self.imports_of(self.entry(booted)) if item[0] in self.on_demand]
        return found

    def closure(self, fullname: str, already_sent: set[str]) -> list[Entry]:
        """The entry for fullname, then everything it needs that the context lacks.

        That is its parent packages (imported before it) and, recursively, the
        modules their sources import.
        """
        first = self.entry(fullname)
        entries = [first]
        seen = {fullname}
        pending = [first] if first[1] in ("module", "package") else []
        wanted = [(parent, True) for parent in _with_parents(fullname)[:-1]]
        while wanted or pending:
            if not wanted:
                wanted = list(self.imports_of(pending.pop()))
                continue
            name, certain = wanted.pop(0)
            for candidate in _with_parents(name):
                if candidate in seen or candidate in already_sent:
                    continue
                seen.add(candidate)
                if candidate in self.booted:
                    if candidate in self.booted_modules:  # never sent; its on-demand imports are
                        wanted += self._on_demand_imports_of(candidate)
                    continue
                if is_stdlib(candidate):
                    continue
                entry = self.entry(candidate)
                if entry[1] == "missing" and not certain and candidate == name:
                    continue  # `from pkg import name`: name may be an attribute
                entries.append(entry)
                if entry[1] in ("module", "package"):
                    pending.append(entry)
        SCANS.flush()
        return entries


class ScanCache:
    """What each source file imports, kept in memory and on disk across processes.

    Parsing a large package costs tens of milliseconds per file; a deploy that
    runs again reads the answers from ~/.cache/transport/import-scans (or under
    $XDG_CACHE_HOME), one small file per scanned source, so a lookup reads only
    what it needs however many sources were ever scanned. Keys name the module
    and its source's size and checksum, so an edited file is scanned anew. An
    unreadable or unwritable cache only costs the parsing.
    """

    def __init__(self) -> None:
        self._entries: dict[str, list[tuple[str, bool]] | None] = {}
        self._new: dict[str, list[tuple[str, bool]]] = {}
        self._lock = compat.allocate_lock()

    def _path(self, key: str) -> str:
        import hashlib

        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        return os.path.join(disk_cache.cache_dir(), "import-scans", digest)

    def get(self, key: str) -> list[tuple[str, bool]] | None:
        with self._lock:
            if key in self._entries:
                return self._entries[key]
        import json

        entry = None
        data = disk_cache.read(self._path(key))
        try:
            if data is not None:
                stored_key, imports = json.loads(data)
                if stored_key == key:
                    entry = [(name, bool(certain)) for name, certain in imports]
        except (ValueError, TypeError):
            pass
        with self._lock:
            self._entries[key] = entry
        return entry

    def put(self, key: str, imports: list[tuple[str, bool]]) -> None:
        with self._lock:
            self._entries[key] = imports
            self._new[key] = imports

    def flush(self) -> None:
        """Write new scans to disk (after a closure, not after every file)."""
        import json

        with self._lock:
            new, self._new = self._new, {}
        for key, imports in new.items():
            disk_cache.write(self._path(key), json.dumps([key, imports]).encode("utf-8"))


SCANS = ScanCache()


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _scan(fullname: str, is_package: bool, source: bytes) -> list[tuple[str, bool]]:
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    package = fullname if is_package else fullname.rpartition(".")[0]
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, True) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                if node.level > 1:
                    base_parts = base_parts[:-(node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base:
                continue
            found.append((base, True))
            found += [(f"{base}.{alias.name}", False) for alias in node.names if alias.name != "*"]
    return found


# Names the standard library tries on import that a target may lack: copy and pickle
# try Jython's org.python.core up to Python 3.11, Python 2.7's xml packages PyXML's
# _xmlplus and ElementC14N, hashlib (through random and tempfile) an OpenSSL it may
# have been built without. Unless this controller has them, they go as 'missing' with
# the first modules a context is sent, so it need not ask. (A target's own modules
# still win: it asks its parent only for what it cannot import itself.)
STDLIB_PROBES = ("org", "_xmlplus", "ElementC14N", "_hashlib")


def _with_byte_code(entry: Entry) -> Entry:
    """entry with its byte code for this interpreter's tag, if it has source that compiles."""
    if entry[1] not in ("module", "package"):
        return entry
    code = byte_code_of(entry[2], entry[3])
    return entry if code is None else (*entry, byte_code_tag(), code)


class ModuleServer:
    """Answers GET_MODULE from every context, on a worker thread."""

    def __init__(self, core: CoreRouter, max_message_size: int) -> None:
        self.core = core
        # No answer may be larger: the target would drop its connection.
        self.max_message_size = max_message_size
        self.finder = ModuleFinder()
        self._absent_probes: list[Entry] | None = None
        self.python2: set[int] = set()  # contexts running Python 2.7 (the Router says which)
        self.byte_code: set[int] = set()  # contexts with this interpreter's byte-code tag
        self._sent: dict[int, set[str]] = {}
        self.requested: dict[int, list[str]] = {}
        self._work: compat.SimpleQueue = compat.SimpleQueue()
        self._waiting: dict[int, int] = {}  # requests queued per context, under _waiting_lock
        self._waiting_lock = compat.allocate_lock()
        self._flooding: set[int] = set()  # contexts warned of (broker thread)
        self._not_reading: set[int] = set()  # contexts warned of (the serving thread)
        self._started = False
        core.add_handler(GET_MODULE, self._on_request, accept=accept_from_anyone)
        core.add_handler(GET_RESOURCE, self._on_request, accept=accept_from_anyone)
        core.on_context_lost.append(self._forget)

    def _forget(self, context_id: int, reason: str) -> None:
        self._sent.pop(context_id, None)
        self.requested.pop(context_id, None)
        self.python2.discard(context_id)
        self.byte_code.discard(context_id)
        self._flooding.discard(context_id)
        self._not_reading.discard(context_id)

    def _went_near(self, context_id: int, name: str) -> bool:
        """Whether module name was sent to context_id, to an intermediary on its way
        (which answers it from its cache), or to a context reached through it (for
        which it asks in its own name)."""
        if name in self._sent.get(context_id, ()):
            return True
        if any(name in self._sent.get(hop, ()) for hop in self.core.hops_to(context_id)):
            return True
        return any(name in names for other, names in list(self._sent.items())
                   if context_id in self.core.hops_to(other))

    def mark_sent(self, context_id: int, name: str) -> None:
        """name went to context_id by other means: it does not need it again."""
        self._sent.setdefault(context_id, set()).add(name)

    def unsend(self, context_id: int, name: str) -> None:
        """name did not go to context_id after all: it may ask for it."""
        self._sent.get(context_id, set()).discard(name)

    def preload_entries(self, context_id: int, names: list[str], whole_packages: bool) -> list[Entry]:
        """Entries for names and their closures that context_id has not been sent yet."""
        sent = self._sent.setdefault(context_id, set())
        entries: list[Entry] = []
        wanted = list(names)
        while wanted:
            name = wanted.pop(0)
            if name in sent:  # its modules may not be, for whole_packages
                kind = self.finder.entry(name)[1] if whole_packages else None
            else:
                closure = self.finder.closure(name, sent)
                sent.update(entry[0] for entry in closure)
                entries += closure
                kind = closure[0][1]
            if whole_packages and kind in ("package", "namespace"):
                wanted += self.finder.submodules(name)
        if any(is_main_script(entry) for entry in entries if entry[1] != "missing"):
            sent.add(SCRIPT_SENT)
        return self._completed(context_id, entries, sent)

    def _completed(self, context_id: int, entries: list[Entry], sent: set[str]) -> list[Entry]:
        """entries (already in sent), with the answers that go ahead with them: Python
        2.7's relative-first attempts, and the absent probes (_with_probes); each with
        its byte code for a context of this interpreter's tag."""
        if context_id in self.python2:
            entries = entries + self._relative_first(entries, sent)
        entries = self._with_probes(sent, entries)
        if context_id in self.byte_code:
            entries = [_with_byte_code(entry) for entry in entries]
        return entries

    def _relative_first(self, entries: list[Entry], sent: set[str]) -> list[Entry]:
        """For a Python 2.7 context: what its relative-first imports will try.

        Python 2.7 tries `import os` inside package pkg as pkg.os first, and asks the
        forwarder for it. The answers go ahead: 'missing' where the package has no
        such module (most), and the module with its closure where it does (an
        implicit relative import of a sibling).
        """
        added: list[Entry] = []
        for entry in entries:
            if entry[1] not in ("module", "package"):
                continue
            package = entry[0] if entry[1] == "package" else entry[0].rpartition(".")[0]
            if not package:
                continue
            tops = {name.partition(".")[0] for name, _ in self.finder.imports_of(entry)}
            for top in sorted(tops):
                candidate = f"{package}.{top}"
                if candidate in sent:
                    continue
                found = self.finder.closure(candidate, sent)
                sent.update(item[0] for item in found)
                added += found
        return added

    def _with_probes(self, sent: set[str], entries: list[Entry]) -> list[Entry]:
        """entries, plus the absent probes not yet sent, when entries are to be sent at all."""
        if not any(entry[1] != "missing" for entry in entries):
            return entries
        if self._absent_probes is None:
            self._absent_probes = [entry for entry in map(self.finder.entry, STDLIB_PROBES)
                                   if entry[1] == "missing"]
        probes = [entry for entry in self._absent_probes if entry[0] not in sent]
        sent.update(entry[0] for entry in probes)
        return entries + probes

    def _on_request(self, msg: Message) -> None:
        if not self._started:  # requests arrive on the broker thread only: no race
            self._started = True
            compat.start_daemon_thread(self._serve_forever, "transport-modules")
        if len(msg.data) > MAX_REQUEST_BYTES:
            msg.data = b""  # held or queued, a request keeps only what it can need
        with self._waiting_lock:
            waiting = self._waiting.get(msg.src, 0)
            if waiting < MAX_WAITING:
                self._waiting[msg.src] = waiting + 1
        if waiting < MAX_WAITING:
            self._work.put(msg)
        elif msg.src not in self._flooding:
            self._flooding.add(msg.src)
            log.warning("transport", "context %d asks for more than %d modules at once: "
                        "requests dropped", msg.src, MAX_WAITING)

    def _taken(self, msg: Message) -> None:
        with self._waiting_lock:
            left = self._waiting.get(msg.src, 1) - 1
            if left:
                self._waiting[msg.src] = left
            else:
                del self._waiting[msg.src]

    def _serve_forever(self) -> None:
        held: list[Message] = []
        while True:
            try:
                msg = self._work.get(timeout=HOLD_RETRY if held else None)
            except compat.Empty:
                msg = None
            if msg is not None:
                self._taken(msg)
                if sum(1 for other in held if other.src == msg.src) >= MAX_HELD:
                    if msg.src not in self._not_reading:
                        self._not_reading.add(msg.src)
                        log.warning("transport", "context %d asks for modules without reading "
                                    "the answers: requests dropped", msg.src)
                else:
                    held.append(msg)
            waiting = []
            for request in held:
                stream = self.core.route_for(request.src)
                if stream is None:
                    continue  # the asker is gone
                if stream.queued() > BACKLOG_LIMIT:
                    waiting.append(request)
                else:
                    self._answer(request)
            held = waiting

    def _answer(self, msg: Message) -> None:
        try:
            if msg.handle == GET_RESOURCE:
                self._serve_resource(msg)
            else:
                self._serve(msg)
        except Exception as e:  # one bad request must not stop the others
            log.error("transport", "serving context %d failed: %s", msg.src, e)

    def _serve_resource(self, msg: Message) -> None:
        try:
            package, name = codec.decode(msg.data)
        except (codec.CodecError, TypeError, ValueError):
            package = name = None
        if isinstance(package, str) and not self._went_near(msg.src, package):
            # A package's data is its own business: only a context that has it may read it.
            answer: tuple = ("refused", f"package {package[:200]} was not sent to this context")
        else:
            answer = self.finder.resource(package, name)
        log.debug("transport", "context %d asked for data file %r of %s: %s", msg.src, name,
                  package, answer[0])
        data = codec.encode(answer)
        if len(data) > self.max_message_size:
            data = codec.encode(("refused", f"it is {len(data)} bytes, more than a message may "
                                 f"carry (max_message_size, {self.max_message_size})"))
        self.core.send(Message(msg.src, CONTROLLER_ID, msg.reply_to, data))

    def _serve(self, msg: Message) -> None:
        try:
            fullname = codec.decode(msg.data)
        except codec.CodecError:
            fullname = None
        sent = self._sent.setdefault(msg.src, set())
        if not valid_module_name(fullname):
            entries: list[Entry] = [(str(fullname)[:200], "missing", None, None)]
        else:
            requested = self.requested.setdefault(msg.src, [])
            if len(requested) < MAX_REQUESTED_KEPT:
                requested.append(fullname)
            entries = self.finder.closure(fullname, sent)
            withheld: set[str] = set()
            if not self._went_near(msg.src, SCRIPT_SENT):
                # The controller's own script (and what it holds: passwords, say) goes
                # only where a function of it was called, under any name.
                withheld = {entry[0] for entry in entries if is_main_script(entry)}
                entries = [(entry[0], "missing", None, None) if entry[0] in withheld else entry
                           for entry in entries]
                if entries[0][0] in withheld:  # nor what it imports
                    entries = entries[:1]
            if entries[0][1] != "missing":  # names made up are not kept, nor the script's
                sent.update(entry[0] for entry in entries if entry[0] not in withheld)
                entries = self._completed(msg.src, entries, sent)  # adds what it appends to sent
        log.debug("transport", "context %d asked for %s: sending %d modules", msg.src,
                  fullname, sum(1 for e in entries if e[1] != "missing"))
        data = pack_entries(entries)
        if len(data) > self.max_message_size and len(entries) > 1:
            # The modules it will need next are asked for when it needs them.
            sent.difference_update(entry[0] for entry in entries[1:])
            entries = entries[:1]
            data = pack_entries(entries)
        if len(data) > self.max_message_size:
            log.warning("transport", "context %d asked for %s: it is %d bytes compressed, "
                        "more than max_message_size (%d): not sent", msg.src, fullname,
                        len(data), self.max_message_size)
            sent.difference_update(entry[0] for entry in entries)
            data = pack_entries([(fullname, "missing", None, None)])
        self.core.send(Message(msg.src, CONTROLLER_ID, msg.reply_to, data))
