"""The import hook that serves modules from memory on a target.

The first stage creates this module by hand and installs a MemoryImporter
holding the core's modules; each is then compiled (or, when the controller
sent byte code for this very interpreter, unmarshalled) only when something
imports it, so a target pays for the modules it uses. It speaks both import
protocols: find_spec (Python 3.4+, the only one 3.12+ knows) and
find_module/load_module (Python 2.7).
"""
from __future__ import absolute_import

import sys

PACKAGES = ('transport', 'transport.core')


def module_spec(name, loader, **kwargs):
    """A ModuleSpec (Python 3), taken from the import system's frozen bootstrap:
    importing importlib.machinery (and warnings with it) would cost every boot."""
    return sys.modules['_frozen_importlib'].ModuleSpec(name, loader, **kwargs)


class MemoryImporter(object):
    """Serves modules whose source it holds, by fully qualified name."""

    def __init__(self, modules, packages=PACKAGES):
        self.modules = dict(modules)  # name -> (kind, data): b's' source, b'c' marshalled code
        self.packages = set(packages)

    def has(self, fullname):
        return fullname in self.modules or fullname in self.packages

    # Python 3.4+
    def find_spec(self, fullname, path=None, target=None):
        if not self.has(fullname):
            return None
        return module_spec(fullname, self, origin='<%s>' % fullname,
                           is_package=fullname in self.packages)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self._run(module, module.__name__)

    # Python 2.7
    def find_module(self, fullname, path=None):
        if self.has(fullname):
            return self
        return None

    def load_module(self, fullname):
        return load_legacy(self, fullname, fullname in self.packages,
                           lambda module: self._run(module, fullname))

    def _run(self, module, fullname):
        module.__file__ = '<%s>' % fullname
        kind, data = self.modules.get(fullname, (b's', b''))
        if kind == b'c':
            import marshal
            code = marshal.loads(data)
        else:
            code = compile(data, module.__file__, 'exec')
        exec(code, module.__dict__)


def load_legacy(loader, fullname, is_package, run):
    """Python 2.7's load_module() protocol, for both of the core's import hooks."""
    module = sys.modules.get(fullname)
    if module is None:
        module = sys.modules[fullname] = type(sys)(fullname)
    module.__loader__ = loader
    if is_package:
        module.__path__ = []
        module.__package__ = fullname
    else:
        module.__package__ = fullname.rpartition('.')[0]
    try:
        run(module)
    except BaseException:
        sys.modules.pop(fullname, None)
        raise
    return module


def parse_modules(body):
    """Entries `name kind size\\n` + data, one after another -> {name: (kind, data)}."""
    modules = {}
    pos = 0
    while pos < len(body):
        end = body.index(b'\n', pos)
        name, kind, size = body[pos:end].split(b' ')
        start = end + 1
        modules[str(name.decode('ascii'))] = (kind, body[start:start + int(size)])
        pos = start + int(size)
    return modules


def install(body):
    """Install an importer for the modules in the payload's body; return it."""
    importer = MemoryImporter(parse_modules(body))
    sys.meta_path.insert(0, importer)
    return importer
