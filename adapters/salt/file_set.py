"""The Salt file set a fast target imports Salt from, and its sync into the target's cache.

The set is what salt-ssh's thin tarball holds (salt.utils.thin.get_tops: Salt
and the pure-Python packages it needs, and the master config's thin_extra_mods;
the Salt extensions installed here, with their entry points, as the master
config's thin_exclude_saltexts and thin_saltext_allowlist/blocklist say),
less what is the controller's own standard library (the target has its own)
and this adapter's own extension (no use there).
Its manifest lists each file's
relative path, SHA-256 and mode; the manifest's hash names the tree on the
target. sync() sends the non-Python files the target's cache lacks
(compressed, in batches) and has the target build the tree, where Python
files not yet received are placeholders filled in on first import; with the
cache warm it costs one call and sends no file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sysconfig
import zlib
from typing import Any

import transport
from adapters.salt.remote import file_cache
from transport import disk_cache

log = logging.getLogger(__name__)

BATCH_BYTES = 4 * 1024 * 1024
MAX_FILES_ASKED = 256  # in one request to the file service
LIST_ANSWER_BYTES = 1024 * 1024  # compressed, in one answer to a list (the target asks again)
served: list[int] = []  # sizes of the files file_for() sent, in this process
SKIPPED_DIRS = {"__pycache__"}


class DigestCache:
    """SHA-256 of files, remembered on disk by path, size and modification time.

    Each salt-ssh host process builds the manifest; hashing Salt's files anew
    would cost each ~0.2 s, a stat each costs ~10 ms in all. One cache file per
    Salt installation (named after its top-level paths), holding only the files
    the last manifest listed, so it stays the size of one file set.
    """

    def __init__(self, tops: list[str]) -> None:
        name = hashlib.sha256("\0".join(sorted(tops)).encode("utf-8", "surrogateescape"))
        self.path = os.path.join(disk_cache.cache_dir(),
                                 f"salt-file-digests-{name.hexdigest()[:16]}.json")
        data = disk_cache.read(self.path)
        try:
            self.known: dict[str, list] = json.loads(data) if data is not None else {}
        except ValueError:
            self.known = {}
        self.used: dict[str, list] = {}
        self.changed = False

    def describe(self, path: str) -> tuple[str, int, str]:
        st = os.stat(path)
        known = self.known.get(path)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            digest = known[2]
        else:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            known = [st.st_size, st.st_mtime_ns, digest]
            self.changed = True
        self.used[path] = known
        return digest, st.st_mode & 0o777, path

    def save(self) -> None:
        if not self.changed and len(self.used) == len(self.known):
            return
        disk_cache.write(self.path, json.dumps(self.used).encode("utf-8"))


# What the master config says the thin tarball holds (thin_extra_mods and the Salt
# extensions' settings): configure() sets them before the manifest is first read.
THIN_OPTIONS = ("thin_extra_mods", "thin_exclude_saltexts", "thin_saltext_allowlist",
                "thin_saltext_blocklist")
thin_options: dict[str, Any] = {}
OUR_DISTRIBUTION = "transport"  # its Salt extension only installs this adapter's hooks


def configure(opts: dict[str, Any]) -> None:
    thin_options.update((key, opts.get(key)) for key in THIN_OPTIONS)


def _tops() -> list[tuple[str, int]]:
    """(path, depth) of each top of the set: a package directory or a module file, named
    on the target by its last `depth` path components and what is below (a namespace
    package's portion has its namespace's names too)."""
    import salt.utils.thin

    listed: list[Any] = list(salt.utils.thin.get_tops(
        extra_mods=thin_options.get("thin_extra_mods") or ""))
    discover = getattr(salt.utils.thin, "_discover_saltexts", None)  # Salt 3007 and later
    if discover is not None and not thin_options.get("thin_exclude_saltexts"):
        blocklist = list(thin_options.get("thin_saltext_blocklist") or []) + [OUR_DISTRIBUTION]
        modules, distributions = discover(allowlist=thin_options.get("thin_saltext_allowlist"),
                                          blocklist=blocklist)
        listed += [module for module in modules if module not in listed]
        listed += [(path, None) for path in _entry_point_files(distributions)]
    tops: list[tuple[str, int]] = []
    for entry in listed:  # 3006 lists paths; 3008 (path, namespace) pairs
        path, namespace = entry if isinstance(entry, (tuple, list)) else (entry, None)
        top = (os.path.realpath(path), 1 + len(namespace or ()))
        if top not in tops:
            tops.append(top)
    return tops


def _entry_point_files(distributions: dict[str, Any]) -> list[str]:
    """The Salt extensions' entry points, as the thin tarball carries them (a dist-info
    directory holding only entry_points.txt, under either spelling of the name), written
    to the cache here, so that the target's loader finds the extensions too."""
    directories = []
    for _, found in sorted(distributions.items()):
        if not found["entrypoints"]:
            continue
        text = "[salt.loader]\n" + "".join(f"{entry} = {value}\n" for entry, value
                                           in found["entrypoints"].items())
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        for spelling in sorted({found["name"], found["name"].replace("-", "_")}):
            directory = os.path.join(disk_cache.cache_dir(), "salt-entry-points", digest,
                                     f"{spelling}.dist-info")
            path = os.path.join(directory, "entry_points.txt")
            if disk_cache.read(path) != text.encode("utf-8"):
                disk_cache.write(path, text.encode("utf-8"))
            directories.append(directory)
    return directories


@functools.lru_cache(maxsize=1)
def manifest() -> tuple[str, tuple[tuple[str, str, int], ...], dict[str, str]]:
    """(tree id, ((relative path, sha256, mode), ...), {sha256: local path})."""
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    # The target's own standard library serves what lives in the controller's.
    tops = [(top, depth) for top, depth in _tops() if not top.startswith(stdlib + os.sep)]
    digests = DigestCache([top for top, _ in tops])
    entries: dict[str, tuple[str, int, str]] = {}
    for top, depth in tops:
        base = top
        for _ in range(depth):
            base = os.path.dirname(base)
        prefix = len(base) + 1  # the paths below are named relative to base
        if os.path.isfile(top):
            entries[top[prefix:]] = digests.describe(top)
            continue
        for directory, subdirs, files in os.walk(top):
            subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS)
            for name in sorted(files):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(directory, name)
                entries[path[prefix:]] = digests.describe(path)
    digests.save()
    listing = tuple((rel, digest, mode) for rel, (digest, mode, _) in sorted(entries.items()))
    sources = {digest: path for digest, _, path in entries.values()}
    tree_id = hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:32]
    return tree_id, listing, sources


def file_for(request: Any) -> bytes | list[bytes]:
    """The file service's answer: the compressed content of one file of the set, by
    SHA-256; or for a list of Python files' digests (up to MAX_FILES_ASKED, no repeats),
    the contents of as many of them, in order, as fit in LIST_ANSWER_BYTES (one at least).

    The target asks; only files of the manifest are served.
    """
    if not isinstance(request, list):
        return _one_file(request)
    if len(request) > MAX_FILES_ASKED or len(set(map(repr, request))) != len(request):
        raise ValueError(f"at most {MAX_FILES_ASKED} files at once, each once")
    if not all(isinstance(d, str) and d in _python_digests() for d in request):
        raise KeyError("not a Python file of the Salt file set")
    answers: list[bytes] = []
    size = 0
    for digest in request:
        if answers and size >= LIST_ANSWER_BYTES:
            break
        answers.append(_one_file(digest))
        size += len(answers[-1])
    return answers


@functools.lru_cache(maxsize=1)
def _python_digests() -> frozenset[str]:
    return frozenset(digest for relative, digest, _ in manifest()[1] if relative.endswith(".py"))


def _one_file(digest: Any) -> bytes:
    _, _, sources = manifest()
    if not isinstance(digest, str) or digest not in sources:
        raise KeyError("not a file of the Salt file set")
    with open(sources[digest], "rb") as f:
        data = zlib.compress(f.read(), 6)
    served.append(len(data))
    return data


def sync(context: transport.Context) -> tuple[str, int, int]:
    """Make the tree present on the context; return (its path there, files sent, bytes sent)."""
    tree_id, listing, sources = manifest()
    ready = context.call(file_cache.tree_ready, tree_id)
    if ready:
        return ready, 0, 0
    # Python files arrive when first imported (remote.lazy_files); the rest now.
    eager = sorted({digest for relative, digest, _ in listing if not relative.endswith(".py")})
    missing = context.call(file_cache.missing_blobs, eager)
    files = sent = 0
    batch: list[tuple[str, bytes]] = []
    batch_bytes = 0
    for digest in missing:
        with open(sources[digest], "rb") as f:
            packed = zlib.compress(f.read(), 6)
        batch.append((digest, packed))
        batch_bytes += len(packed)
        if batch_bytes >= BATCH_BYTES:
            context.call(file_cache.store_blobs, batch)
            files, sent = files + len(batch), sent + batch_bytes
            batch, batch_bytes = [], 0
    if batch:
        context.call(file_cache.store_blobs, batch)
        files, sent = files + len(batch), sent + batch_bytes
    path = context.call(file_cache.build_tree, tree_id, [list(entry) for entry in listing])
    return path, files, sent
