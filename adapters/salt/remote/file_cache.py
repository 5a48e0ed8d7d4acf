"""A per-user, content-addressed file cache on the target that Salt is imported from.

Blobs live under ~/.cache/transport-salt/blobs/<sha256> and are written only
after their hash checks out; a user whose home is missing or read-only (a
service account, as a sudo_user often is) gets a private directory of its
own in /var/tmp instead. A tree (trees/<tree id>/, the id being a hash of
the manifest) has every path of the controller's Salt file set: a copy of its
blob, or for a Python file not received yet a placeholder that fetches it on
first import (lazy_files). A tree is built in a staging directory of its
own, its marker file written last, and renamed into place: it is either
complete or absent, and a complete one is never replaced, so concurrent runs
can share the cache. Salt's loader lists and reads real directories there,
and later runs (any Salt run with the same files) find in place what earlier
runs used.

The cache does not grow with every Salt upgrade: a run that finds its tree
marks it used (its marker's time, at most once a day), and a run that builds
a new tree then removes the trees no run used for UNUSED_DAYS, the blobs no
remaining tree lists, and the staging directories of runs killed while
building (prune()).
"""

import hashlib
import json
import os
import shutil
import stat
import time
import zlib

MARKER = ".transport-complete"
UNUSED_DAYS = 30
DAY = 24 * 3600


def base_dir():
    """This user's cache: ~/.cache/transport-salt if it is there or can be made,
    else /var/tmp/transport-salt-<uid>, which must be this user's own private directory."""
    home = os.path.join(os.path.expanduser("~"), ".cache", "transport-salt")
    if _can_make(home):
        return home
    return _private_temporary_dir()


def _can_make(path):
    """Whether path is a directory this user can write in, or can be made (its nearest
    existing ancestor is one)."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def _private_temporary_dir():
    """/var/tmp/transport-salt-<uid> (/tmp's without /var/tmp), made 0700 if absent. One
    that another user made first, or that is a symlink or open to others, is refused:
    Salt is imported from it."""
    parent = "/var/tmp" if os.path.isdir("/var/tmp") else "/tmp"
    path = os.path.join(parent, f"transport-salt-{os.geteuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise OSError(f"the home directory cannot hold Salt's file cache, and {path} is not "
                      f"a private directory of this user's (uid {os.geteuid()}): not using it")
    return path


def write_file(path, data, mode):
    """data (bytes) at path with mode, whole or not at all: written beside it under a
    name of its own (threads, runs and NFS hosts may write the same path) and renamed."""
    temporary = f"{path}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
    with open(temporary, "wb") as f:
        f.write(data)
    os.chmod(temporary, mode)
    os.rename(temporary, path)


def tree_dir(tree_id):
    return os.path.join(base_dir(), "trees", tree_id)


def tree_ready(tree_id):
    """The tree's path if it is complete here (marking it used), else None."""
    path = tree_dir(tree_id)
    marker = os.path.join(path, MARKER)
    if not _mark_used(marker):
        return None
    return path


def _mark_used(path):
    """Whether path is there; if it was last marked used over a day ago, mark it now
    (a run's prune keeps what was used within the last day)."""
    try:
        stale = time.time() - os.stat(path).st_mtime > DAY
    except OSError:
        return False
    if stale:
        try:
            os.utime(path)
        except OSError:
            pass  # read-only: it may be pruned, and then is made again
        return os.path.exists(path)  # not pruned meanwhile
    return True


def missing_blobs(digests):
    """Which of the digests have no blob here (those here are marked used: a run's prune
    keeps them until this run has built its tree from them)."""
    blobs = os.path.join(base_dir(), "blobs")
    return [d for d in digests if not _mark_used(os.path.join(blobs, d))]


def store_blobs(entries):
    """Write (sha256 hex, zlib-compressed bytes) entries as blobs, checking each hash."""
    blobs = os.path.join(base_dir(), "blobs")
    os.makedirs(blobs, 0o700, exist_ok=True)  # another run may make it at the same moment
    for digest, packed in entries:
        data = zlib.decompress(packed)
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"blob {digest}: content does not match its hash")
        write_file(os.path.join(blobs, digest), data, 0o644)
    return len(entries)


def build_tree(tree_id, manifest):
    """Lay out every (relative path, digest, mode) of the manifest; return the tree's path.

    A file whose blob is here is copied from it; a Python file whose blob is not
    gets a placeholder that fills itself in on first import (lazy_files). The tree
    is built in a staging directory of its own and renamed into place; a complete
    tree is never replaced, so a run that finds another run's tree finished first
    uses that one (runs may share this cache, over NFS too).
    """
    import tempfile

    from adapters.salt.remote import lazy_files

    path = tree_dir(tree_id)
    trees = os.path.dirname(path)
    os.makedirs(trees, 0o700, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{tree_id}.", suffix=".tmp", dir=trees)
    try:
        blobs = os.path.join(base_dir(), "blobs")
        for relative, digest, mode in manifest:
            if relative.startswith("/") or ".." in relative.split("/"):
                raise ValueError(f"unsafe path in manifest: {relative!r}")
            destination = os.path.join(staging, relative)
            os.makedirs(os.path.dirname(destination), 0o755, exist_ok=True)
            blob = os.path.join(blobs, digest)
            if os.path.exists(blob):
                shutil.copyfile(blob, destination)
            elif relative.endswith(".py"):
                with open(destination, "wb") as f:
                    f.write(lazy_files.PLACEHOLDER)
            else:
                raise ValueError(f"{relative}: its content was not sent")
            os.chmod(destination, mode & 0o755)
        with open(os.path.join(staging, lazy_files.MANIFEST), "w") as f:
            json.dump({relative: digest for relative, digest, _ in manifest}, f)
        with open(os.path.join(staging, MARKER), "w") as f:
            f.write(tree_id)
        os.chmod(staging, 0o755)  # mkdtemp made it 0700; a tree is read like any install
        if tree_ready(tree_id) is None and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)  # incomplete: no run can be using it
        try:
            os.rename(staging, path)
        except OSError:
            if tree_ready(tree_id) is None:  # not another run's finished tree: a real failure
                raise
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    try:
        prune(keep=tree_id)
    except Exception:  # noqa: BLE001 - the tree is built; what is left is only space
        pass
    return path


def prune(keep, now=None):
    """Remove the trees other than keep that no run used for UNUSED_DAYS, then the blobs
    that no remaining tree lists, and the staging directories of runs killed while building.

    Whatever was made or used within the last day stays: a run may be building a tree
    from blobs it has just stored, or be between finding its tree and importing from it.
    """
    from adapters.salt.remote import lazy_files

    now = time.time() if now is None else now
    trees = os.path.join(base_dir(), "trees")
    remaining = []
    for name in os.listdir(trees):
        path = os.path.join(trees, name)
        if name.startswith("."):  # staging, or a tree being removed
            if _modified(path) < now - DAY:
                shutil.rmtree(path, ignore_errors=True)
        elif name == keep or _modified(os.path.join(path, MARKER)) > now - UNUSED_DAYS * DAY:
            remaining.append(path)
        else:
            aside = os.path.join(trees, f".{name}.{os.urandom(6).hex()}.removing")
            try:
                os.rename(path, aside)  # runs that look for it now build it again
            except OSError:
                continue
            shutil.rmtree(aside, ignore_errors=True)
    listed = set()
    for path in remaining:
        try:
            with open(os.path.join(path, lazy_files.MANIFEST)) as f:
                listed.update(json.load(f).values())
        except (OSError, ValueError, TypeError, AttributeError):
            return  # which blobs a tree needs is unknown: keep them all
    blobs = os.path.join(base_dir(), "blobs")
    for digest in os.listdir(blobs) if os.path.isdir(blobs) else ():
        blob = os.path.join(blobs, digest)
        if digest not in listed and _modified(blob) < now - DAY:
            try:
                os.unlink(blob)
            except OSError:
                pass


def _modified(path):
    """path's modification time, 0 if it is gone (as good as never used)."""
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0
