"""Salt's Python files on a target, each received the first time it is imported.

The file cache's tree has every path of the controller's Salt file set, so
Salt's loader lists the directories it expects; a Python file whose content
this host has not received yet is a placeholder (PLACEHOLDER), which on import
calls fill(). fill() asks the controller's file service (a Context.serve
handle, set by salt_call.run) for that one file by its SHA-256, checks the
answer against it, stores the blob, replaces the placeholder with the real
file (so later runs read it from disk) and runs the source in the module
being imported. Only what is imported travels.
"""

import hashlib
import json
import os
import zlib

from adapters.salt.remote import file_cache
from transport.core import dispatch

# The controller's file service for this interpreter (set by salt_call.run).
service_handle = None

MANIFEST = ".transport-manifest.json"
PLACEHOLDER = (
    b"# transport: a placeholder; the source arrives on first import\n"
    b"__import__('adapters.salt.remote.lazy_files', fromlist=['fill']).fill(globals())\n")

_manifests = {}


def _tree_of(path):
    """(tree directory, path relative to it) for a file inside a tree."""
    trees = os.path.join(file_cache.base_dir(), "trees") + os.sep
    if not path.startswith(trees):
        raise ImportError(f"{path} is not in the transport's salt file cache")
    tree_id, _, relative = path[len(trees):].partition(os.sep)
    return os.path.join(trees, tree_id), relative


def _digest_of(tree, relative):
    manifest = _manifests.get(tree)
    if manifest is None:
        with open(os.path.join(tree, MANIFEST)) as f:
            manifest = _manifests[tree] = json.load(f)
    return manifest[relative]


def _fetch(relative, digest):
    blob = os.path.join(file_cache.base_dir(), "blobs", digest)
    if os.path.exists(blob):
        with open(blob, "rb") as f:
            return f.read()
    if service_handle is None:
        raise ImportError(f"{relative}: not received yet, and no controller to ask")
    try:
        source = zlib.decompress(dispatch.ask_caller(service_handle, digest))
    except (dispatch.AskError, zlib.error) as e:
        raise ImportError(f"{relative}: cannot get it from the controller: {e}") from None
    if hashlib.sha256(source).hexdigest() != digest:
        raise ImportError(f"{relative}: what the controller sent does not match its hash")
    _write(blob, source, 0o644)
    return source


def _write(path, data, mode):
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as f:
        f.write(data)
    os.chmod(temporary, mode)
    os.rename(temporary, path)


def fill(namespace):
    """Replace the placeholder at namespace's __file__ with its source, and run it there.

    The source is compiled by the import system's own loader, which writes its
    byte-code cache as an import from disk would: otherwise the placeholder's
    cache, now stale, would have every module compiled again by the next run.
    """
    from importlib.machinery import SourceFileLoader
    from importlib.util import cache_from_source

    path = namespace["__file__"]
    tree, relative = _tree_of(path)
    source = _fetch(relative, _digest_of(tree, relative))
    _write(path, source, os.stat(path).st_mode & 0o755)
    try:
        os.unlink(cache_from_source(path))  # the placeholder's
    except OSError:
        pass
    name = namespace["__name__"]
    exec(SourceFileLoader(name, path).get_code(name), namespace)
