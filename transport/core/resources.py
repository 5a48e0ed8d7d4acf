"""Data files of forwarded packages, read from the controller when a package asks.

A package the parent sent has no directory on this host, so what it keeps
beside its modules (certifi's cacert.pem, templates, schemas) is asked of the
controller (GET_RESOURCE) when the package reads it: through
importlib.resources (the forwarder's resource reader, whose files() serves
3.10+'s importlib.resources.files()) or pkgutil.get_data (the forwarder's
get_data), and the listing pkgutil.iter_modules reads through the finder of
the package's search path (forwarding.PackageDirectory). Nothing is cached: a
read asks again. A detached process has no parent to ask, so before a job
detaches the controller sends the data files of the packages its function
needs (keep()), and the job reads those.

Not in the boot payload: the forwarder imports this module, through itself,
the first time a package reads a data file.
"""
from __future__ import absolute_import

import errno
import io
import os
import posixpath

from transport.core.asking import ask
from transport.core.dispatch import AskError
from transport.core.handles import CONTROLLER_ID, GET_RESOURCE

TIMEOUT = 60.0

# (package, name) -> what fetch() returns, sent ahead of a detached job by keep().
kept = {}


def keep(files):
    """Hold these data files ({(package, name): bytes or listing}) for the detached
    jobs this process starts, which inherit them; returns how many."""
    kept.update(files)
    return len(files)


def fetch(forwarder, package, name):
    """Data file `name` ('/'-separated, relative; '' is the package itself) of
    forwarded `package`: its bytes, or a directory's listing (a list of names,
    directories ending in '/'). Raises IOError when there is none."""
    if (package, name) in kept:
        return kept[(package, name)]
    where = '%s:%s' % (package, name)
    if not forwarder.can_ask():
        raise IOError(errno.ENOENT, 'no controller to ask for %s (a detached or forked process)' % where)
    try:
        return ask(forwarder.router, CONTROLLER_ID, GET_RESOURCE, (package, name), TIMEOUT,
                   'the controller')
    except AskError as e:
        raise IOError(errno.ENOENT, 'cannot read %s: %s' % (where, e))


def reader(forwarder, fullname):
    """The resource reader of fullname, if it is a package the parent sent."""
    entry = forwarder.entries.get(fullname)
    if entry is None or entry[1] != 'package':
        return None
    return Resources(forwarder, fullname)


def get_data(forwarder, path):
    """pkgutil.get_data's read: path lies in a forwarded package's directory (as the
    controller names it, which is what the package's __file__ says)."""
    if isinstance(path, bytes) and str is bytes:  # 2.7: __file__ is a native str
        path = path.decode('utf-8', 'replace')
    package, directory = None, ''
    for name, entry in list(forwarder.entries.items()):
        if entry[1] == 'package' and entry[2]:
            candidate = os.path.join(os.path.dirname(entry[2]), '')
            if path.startswith(candidate) and len(candidate) > len(directory):
                package, directory = name, candidate
    if package is None:
        raise IOError(errno.ENOENT, 'not a data file of a forwarded package: %s' % path)
    data = fetch(forwarder, package, path[len(directory):].replace(os.sep, '/'))
    if isinstance(data, list):
        raise IOError(errno.EISDIR, 'a directory: %s' % path)
    return data


def iter_modules(forwarder, package, prefix):
    """(prefix + name, is a package) of each module in a forwarded package's directory,
    as pkgutil lists a directory on disk (a subdirectory with an __init__.py is a
    package). With no controller to ask (a detached job): the modules sent ahead."""
    try:
        found = list(_listed_modules(forwarder, package))
    except IOError:
        start = package + '.'
        found = [(name[len(start):], entry[1] == 'package')
                 for name, entry in list(forwarder.entries.items())
                 if name.startswith(start) and '.' not in name[len(start):]
                 and entry[1] in ('module', 'package')]
    for name, is_package in sorted(found):
        yield prefix + name, is_package


def _listed_modules(forwarder, package):
    for name in fetch(forwarder, package, ''):
        if name.endswith('/'):
            name = name[:-1]
            try:
                is_package = '__init__.py' in fetch(forwarder, package, name)
            except IOError:
                continue
            if is_package and '.' not in name:
                yield name, True
        elif name.endswith('.py') and name != '__init__.py' and '.' not in name[:-3]:
            yield name[:-3], False


class Resources(object):
    """importlib's ResourceReader for one forwarded package, and files() for 3.10+."""

    def __init__(self, forwarder, package):
        self.forwarder = forwarder
        self.package = package

    def fetch(self, name):
        return fetch(self.forwarder, self.package, name)

    def kind(self, name):
        """'file', 'dir' or None, from the listing of name's directory."""
        if not name:
            return 'dir'
        parent, _, base = name.rpartition('/')
        try:
            listing = self.fetch(parent)
        except IOError:
            return None
        if not isinstance(listing, list):
            return None
        if base + '/' in listing:
            return 'dir'
        return 'file' if base in listing else None

    def open_resource(self, resource):
        data = self.fetch(resource)
        if isinstance(data, list):
            raise IOError(errno.EISDIR, 'a directory: %s:%s' % (self.package, resource))
        return io.BytesIO(data)

    def resource_path(self, resource):
        # No file on this host: importlib.resources then reads open_resource() instead.
        raise IOError(errno.ENOENT, '%s:%s has no file on this host' % (self.package, resource))

    def is_resource(self, name):
        return self.kind(name) == 'file'

    def contents(self):
        return [name.rstrip('/') for name in self.fetch('')]

    def files(self):
        return ResourcePath(self, '')


class ResourcePath(object):
    """A Traversable (importlib.resources.abc) for a forwarded package's data."""

    def __init__(self, resources, name):
        self._resources = resources
        self._name = name

    def __repr__(self):
        return '<ResourcePath %s:%s>' % (self._resources.package, self._name)

    @property
    def name(self):
        return posixpath.basename(self._name) or self._resources.package.rpartition('.')[2]

    def joinpath(self, *parts):
        name = posixpath.join(self._name, *parts) if parts else self._name
        return ResourcePath(self._resources, name)

    __truediv__ = joinpath

    def iterdir(self):
        listing = self._resources.fetch(self._name)
        if not isinstance(listing, list):
            raise IOError(errno.ENOTDIR, 'not a directory: %r' % self)
        return iter([self.joinpath(entry.rstrip('/')) for entry in listing])

    def is_dir(self):
        return self._resources.kind(self._name) == 'dir'

    def is_file(self):
        return self._resources.kind(self._name) == 'file'

    def exists(self):
        return self._resources.kind(self._name) is not None

    def read_bytes(self):
        return self._resources.open_resource(self._name).read()

    def read_text(self, encoding=None, errors=None):
        return self.read_bytes().decode(encoding or 'utf-8', errors or 'strict')

    def open(self, mode='r', *args, **kwargs):
        stream = io.BytesIO(self.read_bytes())
        return stream if 'b' in mode else io.TextIOWrapper(stream, *args, **kwargs)
