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
forks, which import there what this process never did), so when this process
forks during a salt-call, fill_all() first puts every file of the tree in
place, once per tree. A command Salt starts with a preexec_fn (runas, group,
umask, use_vt) runs the at-fork hook too, so it fills the tree as well.
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
BATCH = 64  # files asked for at once by fill_all (the service may answer fewer)
_fill_failure = None  # why fill_all could not finish, in this process
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
        why = f" (filling the cache before the fork failed: {_fill_failure})" if _fill_failure else ""
        raise ImportError(f"{relative}: cannot get it from the controller: {e}{why}") from None
    if hashlib.sha256(source).hexdigest() != digest:
        raise ImportError(f"{relative}: what the controller sent does not match its hash")
    file_cache.write_file(blob, source, 0o644)
    return source


def fill_all():
    """Replace every placeholder left in the current tree with its source (an at-fork
    hook: see the module's docstring). Blobs already here are used; the rest are asked
    for in batches, each put in place as it arrives. When something fails, what is not
    in place yet stays a placeholder, the tree is not marked filled, and the reason is
    kept for the forked process's import error; this process does not try again."""
    global _fill_failure
    tree = current_tree
    if (tree is None or service_handle is None or _fill_failure
            or os.path.exists(os.path.join(tree, FILLED))):
        return
    try:
        pending = {}  # digest -> relative paths of its placeholders
        complete = True
        for relative, digest in _manifest(tree).items():
            if relative.endswith(".py"):
                state = _is_placeholder(os.path.join(tree, relative))
                if state is None:
                    complete = False
                elif state:
                    pending.setdefault(digest, []).append(relative)
        blobs = os.path.join(os.path.dirname(os.path.dirname(tree)), "blobs")
        os.makedirs(blobs, 0o700, exist_ok=True)
        wanted = []
        for digest in sorted(pending):
            if os.path.exists(os.path.join(blobs, digest)):
                _put_in_place(tree, blobs, digest, pending[digest])
            else:
                wanted.append(digest)
        while wanted:
            answers = dispatch.ask_caller(service_handle, wanted[:BATCH])
            if not answers or len(answers) > len(wanted[:BATCH]):
                raise ImportError("the controller's answer does not fit the files asked for")
            for digest, packed in zip(wanted, answers):
                source = zlib.decompress(packed)
                if hashlib.sha256(source).hexdigest() != digest:
                    raise ImportError(f"what the controller sent for {digest} does not match it")
                file_cache.write_file(os.path.join(blobs, digest), source, 0o644)
                _put_in_place(tree, blobs, digest, pending[digest])
            wanted = wanted[len(answers):]
        if complete:
            with open(os.path.join(tree, FILLED), "w"):
                pass
    except Exception as e:  # a lost controller, a changed file: the fork's imports say so
        _fill_failure = f"{type(e).__name__}: {e}"


def _put_in_place(tree, blobs, digest, relatives):
    with open(os.path.join(blobs, digest), "rb") as f:
        source = f.read()
    for relative in relatives:
        _replace_placeholder(os.path.join(tree, relative), source)


def _is_placeholder(path):
    """True or False; None when it cannot be told (the tree is then not marked filled)."""
    try:
        if os.path.getsize(path) != len(PLACEHOLDER):
            return False
        with open(path, "rb") as f:
            return f.read() == PLACEHOLDER
    except FileNotFoundError:
        return False
    except OSError:
        return None


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

    file_cache.write_file(path, source, os.stat(path).st_mode & 0o755)
    try:
        os.unlink(cache_from_source(path))
    except OSError:
        pass


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
