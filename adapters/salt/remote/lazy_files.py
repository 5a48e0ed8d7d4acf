"""Salt's Python files on a target, each received the first time it is imported.

The file cache's tree has every path of the controller's Salt file set, so
Salt's loader lists the directories it expects; a Python file whose content
this host has not received yet is a placeholder (PLACEHOLDER), which on import
calls fill(). fill() asks the controller's file service (a Context.serve
handle, set by salt_call.run) for that one file by its SHA-256, checks the
answer against it, stores the blob, replaces the placeholder with the real
file (so later runs read it from disk) and runs the source in the module
being imported. Only what is imported travels, with one exception: a process
forked from this one cannot ask the controller (Salt runs parallel states in
forks, which import there what this process never did), so before this
process first forks during a salt-call, fill_all() puts every file of the
tree in place, once per tree.
"""

import hashlib
import json
import os
import zlib

from adapters.salt.remote import file_cache
from transport.core import dispatch

# The controller's file service for this interpreter, and the tree Salt is imported
# from (both set by salt_call.run).
service_handle = None
current_tree = None

MANIFEST = ".transport-manifest.json"
FILLED = ".transport-filled"  # in a tree where no placeholder is left
BATCH = 64  # files asked for at once by fill_all (the service takes up to 256)
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
    return _manifest(tree)[relative]


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


def fill_all():
    """Replace every placeholder left in the current tree with its source (an at-fork
    hook: see the module's docstring). Blobs already here are used; the rest are asked
    for in batches. Failures are left for the import that needs the file to report."""
    tree = current_tree
    if tree is None or service_handle is None or os.path.exists(os.path.join(tree, FILLED)):
        return
    try:
        placeholders = [(relative, digest) for relative, digest in _manifest(tree).items()
                        if relative.endswith(".py") and _is_placeholder(os.path.join(tree, relative))]
        blobs = os.path.join(file_cache.base_dir(), "blobs")
        wanted = sorted({digest for _, digest in placeholders
                         if not os.path.exists(os.path.join(blobs, digest))})
        for start in range(0, len(wanted), BATCH):
            batch = wanted[start:start + BATCH]
            for digest, packed in zip(batch, dispatch.ask_caller(service_handle, batch)):
                source = zlib.decompress(packed)
                if hashlib.sha256(source).hexdigest() != digest:
                    raise ImportError(f"what the controller sent for {digest} does not match it")
                _write(os.path.join(blobs, digest), source, 0o644)
        for relative, digest in placeholders:
            path = os.path.join(tree, relative)
            with open(os.path.join(blobs, digest), "rb") as f:
                _replace_placeholder(path, f.read())
        with open(os.path.join(tree, FILLED), "w"):
            pass
    except Exception:  # a forked process, a lost controller: each import reports its own
        return


def _is_placeholder(path):
    try:
        if os.path.getsize(path) != len(PLACEHOLDER):
            return False
        with open(path, "rb") as f:
            return f.read() == PLACEHOLDER
    except OSError:
        return False


def _manifest(tree):
    manifest = _manifests.get(tree)
    if manifest is None:
        with open(os.path.join(tree, MANIFEST)) as f:
            manifest = _manifests[tree] = json.load(f)
    return manifest


def _replace_placeholder(path, source):
    """The real source in place of the placeholder at path, and the placeholder's byte
    code gone (stale now: it would have the module compiled again by every run)."""
    from importlib.util import cache_from_source

    _write(path, source, os.stat(path).st_mode & 0o755)
    try:
        os.unlink(cache_from_source(path))
    except OSError:
        pass


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

    path = namespace["__file__"]
    tree, relative = _tree_of(path)
    _replace_placeholder(path, _fetch(relative, _digest_of(tree, relative)))
    name = namespace["__name__"]
    exec(SourceFileLoader(name, path).get_code(name), namespace)
