"""Module forwarding on a target: import what is missing from the parent.

A ModuleForwarder sits at the END of sys.meta_path, so whatever the target
can import from its own disk wins, and importers an application appends
later (six.moves ...) are asked before the parent; only a module nothing
else finds is asked of the parent (GET_MODULE). The answer is a list of
entries, the module and the modules it will import next:

    (fullname, kind, origin, source[, tag, code])
    kind: 'module', 'package', 'namespace', 'missing'

zlib-compressed codec data. An entry may also carry the module's marshalled
byte code and the byte-code tag it was made for: a target with that tag runs
it (compiling a large package costs more than sending its code), any other
compiles the source. Every entry is cached, negative ones too, so a name is
asked for once. The same cache answers the target's own children (see
relaying.py): an intermediary serves what it has and asks its parent once
per name, however many children wait for it.

Every wait has a deadline, and a target without a parent (a detached task)
fails at once: a missing module is an ImportError, never a hang. Sources are
accepted only from the parent.
"""
from __future__ import absolute_import

import sys
import zlib

from transport.core import codec
from transport.core.compat import PY2, Event, allocate_lock, monotonic
from transport.core.framing import Message
from transport.core.handles import GET_MODULE, LOAD_MODULE
from transport.core.importer import load_legacy, module_spec

if PY2:
    import imp  # here: imported inside find_module, it would ask find_module for itself

REQUEST_TIMEOUT = 60.0
KINDS = ('module', 'package', 'namespace', 'missing')
# This interpreter's byte-code tag (its magic number in hex; None on 2.7): an entry
# carrying byte code for this tag runs it, any other entry is compiled from source.
_machinery = sys.modules.get('_frozen_importlib_external')  # looked up, never imported
BYTE_CODE_TAG = _machinery and _machinery.MAGIC_NUMBER.hex()

# Standard-library modules of other platforms, which the standard library tries
# on import (subprocess tries msvcrt). A parent never forwards the standard
# library, so asking for them would only cost a round trip.
OTHER_PLATFORMS = frozenset(('msvcrt', '_winapi', 'winreg', 'nt', '_overlapped', 'winsound',
                             '_msi', 'msilib', '_scproxy', '_wmi'))

# The standard library's top-level names, on Python 3.10+.
STDLIB_NAMES = getattr(sys, 'stdlib_module_names', frozenset())
THIRD_PARTY_DIRS = ('site-packages', 'dist-packages')

# The ModuleForwarder installed in this process, if any (see install()).
installed = None


def unpack_entries(data):
    entries = codec.decode(zlib.decompress(data))
    for entry in entries:
        if not isinstance(entry, (list, tuple)) or len(entry) not in (4, 6) or entry[1] not in KINDS:
            raise ValueError('malformed module entry')
    return entries


class _Wait(object):
    """A request for one module name, answered once for every waiter. A request
    after its timeout asks again, for its children still waiting too (the parent
    may have dropped it)."""

    def __init__(self, timeout, old=None):
        self.done = Event()
        self.child_replies = old.child_replies if old else []
        self.deadline = monotonic() + timeout


class ModuleForwarder(object):
    """The import hook and module cache of one target."""

    def __init__(self, router, timeout=REQUEST_TIMEOUT):
        self.router = router
        self.timeout = timeout
        self.entries = {}
        self.groups = {}
        self.paused = 0  # > 0: inside local_imports_only()
        self._waits = {}
        self._lock = allocate_lock()
        router.add_handler(LOAD_MODULE, self._on_load)

    def install(self):
        global installed
        sys.meta_path.append(self)
        installed = self

    # -- the cache -------------------------------------------------------------

    def add(self, entries, requested=None):
        with self._lock:
            if requested is not None:
                self.groups[requested] = list(entries)
            for entry in entries:
                self.entries[entry[0]] = tuple(entry)
            waits = [(name, self._waits.pop(name)) for name in
                     [e[0] for e in entries] if name in self._waits]
        for name, wait in waits:
            wait.done.set()
            for reply in wait.child_replies:
                reply(self.groups.get(name) or entries)

    def _on_load(self, msg):
        self.add(unpack_entries(msg.data))

    # -- asking the parent -----------------------------------------------------

    def request(self, fullname):
        """Ask the parent for fullname unless asked within the timeout; return the _Wait."""
        with self._lock:
            wait = self._waits.get(fullname)
            if wait is not None and monotonic() < wait.deadline:
                return wait
            wait = self._waits[fullname] = _Wait(self.timeout, wait)
        handle = self.router.add_reply_handler(
            lambda msg: self._on_reply(fullname, msg), self.router.parent_id)
        self.router.send(Message(self.router.parent_id, self.router.context_id, GET_MODULE,
                                 codec.encode(fullname), reply_to=handle))
        return wait

    def _on_reply(self, fullname, msg):
        if msg.is_dead:
            entries = [(fullname, 'missing', None, None)]
        else:
            try:
                entries = unpack_entries(msg.data)
            except Exception:
                entries = [(fullname, 'missing', None, None)]
        if not any(e[0] == fullname for e in entries):
            entries = list(entries) + [(fullname, 'missing', None, None)]
        self.add(entries, fullname)

    def _disk_origin(self, name):
        """The file module `name` was loaded from, if it is loaded from a file (not
        forwarded, not the core's own in-memory modules, named '<...>')."""
        module = sys.modules.get(name)
        if module is None or getattr(module, '__loader__', None) is self:
            return None
        origin = getattr(module, '__file__', None)
        return origin if origin and not origin.startswith('<') else None

    def _own_stdlib(self, fullname):
        """Whether fullname belongs to this interpreter's standard library, which a
        parent never forwards (it answers 'missing'): by name on Python 3.10+; on
        any version, a submodule of a package loaded from the standard library's
        directory. Python 2.7 tries every import in a package as a relative one
        first (json.re before re): without this, each would be a round trip."""
        top = fullname.partition('.')[0]
        if top in STDLIB_NAMES:
            return True
        if top == fullname:
            return False
        origin = self._disk_origin(top)
        if not origin:
            return False
        stdlib_dir = _stdlib_dir()
        return (origin.startswith(stdlib_dir)
                and not any(part in origin[len(stdlib_dir):] for part in THIRD_PARTY_DIRS))

    def _relative_attempt_py2(self, fullname):
        """Whether fullname is Python 2.7 trying an absolute import inside a package of
        the target's own as a relative one first (yaml.re for `import re` in yaml):
        the name's last part is a top-level module here, and the package is not one
        the parent sent, so the parent has nothing to add."""
        if not PY2:
            return False
        parent, _, name = fullname.rpartition('.')
        return bool(parent and self._disk_origin(parent)
                    and (name in sys.modules or _on_disk_py2(name, None)))

    def can_ask(self):
        """Whether there is a parent to ask: not in a detached job or another fork."""
        return not self.router.forked()

    def lookup(self, fullname):
        """The entry for fullname, asking the parent if needed; None if unavailable."""
        entry = self.entries.get(fullname)
        if entry is None:
            if not self.can_ask() or self.router.broker.in_broker_thread():
                return None
            if (fullname in OTHER_PLATFORMS or self._own_stdlib(fullname)
                    or self._relative_attempt_py2(fullname)):
                return None
            wait = self.request(fullname)
            if not wait.done.wait(self.timeout):
                return None  # the next import asks again (a late answer is still cached)
            entry = self.entries.get(fullname)
        if entry is None or entry[1] == 'missing':
            return None
        return entry

    # -- the import protocols -------------------------------------------------------

    def _held(self, fullname):
        """Inside local_imports_only(): not for the transport's own modules."""
        return self.paused and not fullname.startswith('transport.core.')

    def find_spec(self, fullname, path=None, target=None):
        if self._held(fullname):
            return None
        if fullname not in self.entries:
            spec = self._ask_later_finders('find_spec', fullname, path, target)
            if spec is not None:
                return spec
        entry = self.lookup(fullname)
        if entry is None:
            return None
        spec = module_spec(fullname, self, origin=entry[2], is_package=entry[1] != 'module')
        if entry[1] == 'namespace':
            spec.submodule_search_locations = []
        spec.has_location = False
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self._run(module, self.entries[module.__name__])

    def find_module(self, fullname, path=None):
        if self._held(fullname) or _on_disk_py2(fullname, path):
            return None
        if fullname not in self.entries:
            loader = self._ask_later_finders('find_module', fullname, path)
            if loader is not None:
                return loader
        return self if self.lookup(fullname) is not None else None

    def _ask_later_finders(self, method, fullname, *args):
        """What the finders installed after this one answer (six.moves, setuptools'
        vendored packages ...): an application's own importers are the target's
        own, so they go before the parent is asked."""
        meta_path = sys.meta_path
        try:
            later = meta_path[meta_path.index(self) + 1:]
        except ValueError:
            return None
        for finder in later:
            try:
                found = getattr(finder, method)(fullname, *args)
            except Exception:
                continue  # a finder that cannot say is asked again by the import system
            if found is not None:
                return found
        return None

    def get_resource_reader(self, fullname):
        try:
            from transport.core import resources  # asked for on first use
        except ImportError:
            return None
        return resources.reader(self, fullname)

    def get_data(self, path):
        from transport.core import resources
        return resources.get_data(self, path)

    def load_module(self, fullname):
        entry = self.entries[fullname]
        return load_legacy(self, fullname, entry[1] != 'module',
                           lambda module: self._run(module, entry))

    def _run(self, module, entry):
        fullname, kind, origin, source = entry[:4]
        filename = origin or '<forwarded %s>' % fullname
        if PY2:  # 2.7: a native str, as from disk (compile() takes no non-ASCII text)
            filename = filename.encode('utf-8')
        module.__file__ = filename
        if kind == 'namespace':
            return
        if kind == 'package':
            # A search path no disk has (absolute: importlib drops relative ones from
            # its cache), whose finder lists the package for pkgutil.iter_modules.
            where = '/<forwarded %s>' % fullname
            module.__path__ = [where]
            sys.path_importer_cache[where] = PackageDirectory(self, fullname)
        # The core's own, as the payload's: no source lines, and no linecache (it imports
        # tokenize and re: milliseconds for the first module a target is sent).
        if not fullname.startswith('transport.core.'):
            import linecache
            # 2.7: a str, as from disk; 3: bytes, or text from a 2.7 parent (its native str).
            text = source if isinstance(source, str) else source.decode('utf-8', 'replace')
            linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        # dont_inherit: the module's own __future__ imports, not this file's (on 2.7,
        # absolute_import here would turn off the module's implicit relative imports).
        code = entry[4:5] == (BYTE_CODE_TAG,) and __import__('marshal').loads(entry[5])
        exec(code or compile(source, filename, 'exec', 0, True), module.__dict__)


class PackageDirectory(object):
    """The finder of a forwarded package's search path: it finds nothing (the
    forwarder does) but lists the package's modules (see resources.iter_modules)."""

    def __init__(self, forwarder, package):
        self.forwarder = forwarder
        self.package = package

    def find_spec(self, *args):
        return None

    find_module = find_spec

    def iter_modules(self, prefix=''):
        from transport.core import resources
        return resources.iter_modules(self.forwarder, self.package, prefix)


def _stdlib_dir():
    """The standard library's directory, with a trailing separator: where os came from."""
    import os
    return os.path.join(os.path.dirname(os.path.abspath(os.__file__)), '')


def _on_disk_py2(fullname, path):
    """Python 2.7 asks sys.meta_path before its own path search, so the forwarder,
    though last there, would be asked for every module first: look on disk
    ourselves, so that the target's own modules win there as on Python 3."""
    if not PY2:
        return False
    try:
        found = imp.find_module(fullname.rpartition('.')[2], path)
    except ImportError:
        return False
    if found[0] is not None:
        found[0].close()
    return True


class local_imports_only(object):
    """Within the block, imports come from the target's own disk only.

    For code that must see the host as it is (an application probing for optional
    modules should not be handed the controller's): nothing is asked of the parent
    but the transport's own on-demand modules (transport.core.*).
    A class, not a contextlib generator: contextlib would be one more import at boot.
    """

    def __enter__(self):
        self.forwarder = installed
        if self.forwarder is not None:
            self.forwarder.paused += 1

    def __exit__(self, *exc_info):
        if self.forwarder is not None:
            self.forwarder.paused -= 1
