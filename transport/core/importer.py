"""The import hook that serves modules from memory on a target.

The first stage creates this module by hand and installs a MemoryImporter
holding the core's sources; every other core module is then compiled only
when something imports it, so a target pays for the modules it uses. It
speaks both import protocols: find_spec (Python 3.4+, the only one 3.12+
knows) and find_module/load_module (Python 2.7).
"""
from __future__ import absolute_import

import sys

PACKAGES = ('transport', 'transport.core')


class MemoryImporter(object):
    """Serves modules whose source it holds, by fully qualified name."""

    def __init__(self, sources, packages=PACKAGES):
        self.sources = dict(sources)
        self.packages = set(packages)

    def has(self, fullname):
        return fullname in self.sources or fullname in self.packages

    def add(self, fullname, source, is_package=False):
        self.sources[fullname] = source
        if is_package:
            self.packages.add(fullname)

    # Python 3.4+
    def find_spec(self, fullname, path=None, target=None):
        if not self.has(fullname):
            return None
        from importlib.machinery import ModuleSpec
        return ModuleSpec(fullname, self, origin='<%s>' % fullname,
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
        code = compile(self.sources.get(fullname, b''), module.__file__, 'exec')
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


def install(parts):
    """Install an importer for the name/source pairs in parts; return it."""
    names = [str(name.decode('ascii')) for name in parts[0::2]]
    importer = MemoryImporter(zip(names, parts[1::2]))
    sys.meta_path.insert(0, importer)
    return importer
