"""`salt-call --local --metadata --out json` run inside the target's persistent interpreter.

Salt is imported from the file cache's tree, and only from the host's disk
(module forwarding is paused for the call). Each call writes the minion config
Salt would have written, runs Salt's own salt-call code with the arguments the
shim would pass, and returns what salt-call printed, its stderr and its exit
status, so salt-ssh parses the same JSON as from a stock host. As the shim
does, it applies the roster's cmd_umask for the call, and with --wipe removes
the thin_dir afterwards (wipe_cache() removes the file cache at the run's end).
During a call, a fork first fills the tree (lazy_files.fill_all, an at-fork
hook registered once).
"""

import contextlib
import importlib
import io
import os
import sys

from adapters.salt.remote import file_cache, lazy_files
from transport.core import forwarding

_filling_before_forks = False


def _fill_before_forking():
    """Once per interpreter: before it forks, the tree is filled (lazy_files.fill_all)."""
    global _filling_before_forks
    if not _filling_before_forks and hasattr(os, "register_at_fork"):
        os.register_at_fork(before=lazy_files.fill_all)
        _filling_before_forks = True


def _use_tree(tree):
    if tree not in sys.path:
        sys.path.insert(0, tree)


def _write_config(config_dir, minion_config):
    os.makedirs(config_dir, 0o700, exist_ok=True)
    path = os.path.join(config_dir, "minion")
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == minion_config:
                return
    except (OSError, ValueError):  # absent, or not this text
        pass
    file_cache.write_file(path, minion_config.encode("utf-8"), 0o600)  # runs may share a thin_dir


def shim_arguments(argv):
    """The arguments after salt-call's options, prepared as salt-ssh's shim prepares them.

    A single string is split on whitespace (the shim's quirk, which Salt's
    wrappers rely on); a trailing --no-parse= option goes before the `--`.
    """
    prepared = argv[0].split() if len(argv) == 1 else [str(a) for a in argv]
    options = []
    if prepared and prepared[-1].startswith("--no-parse="):
        options.append(prepared.pop())
    return options + ["--"] + prepared


def _salt_call_module():
    """salt.cli.call, its logging options reset (salt-call freezes them once set up)."""
    # By name: Salt comes from the tree, so the controller must not forward it with
    # this module (an import statement here would put all of Salt in its closure).
    logging_impl = importlib.import_module("salt._logging.impl")
    if hasattr(logging_impl.set_logging_options_dict, "__options_dict__"):
        del logging_impl.set_logging_options_dict.__options_dict__
    return importlib.import_module("salt.cli.call")


def run(tree, config_dir, minion_config, argv, file_service=None, umask=None, wipe=False):
    """Run one salt-call; return (stdout, stderr, exit status).

    file_service: the controller's handle that serves files not received yet. The
    roster's set_path is this interpreter's PATH already (the bootstrap set it, as the
    shim does before it looks for Python).
    """
    old_umask = os.umask(umask) if umask is not None else None
    try:
        return _run(tree, config_dir, minion_config, argv, file_service)
    finally:
        lazy_files.current_tree = None  # forks outside a salt-call fill nothing
        if old_umask is not None:
            os.umask(old_umask)
        if wipe:
            import shutil

            shutil.rmtree(config_dir, ignore_errors=True)


def wipe_cache():
    """Remove this user's Salt file cache (salt-ssh --wipe: leave nothing behind)."""
    import shutil

    from adapters.salt.remote import file_cache

    shutil.rmtree(file_cache.base_dir(), ignore_errors=True)


def _run(tree, config_dir, minion_config, argv, file_service):
    lazy_files.service_handle = file_service
    lazy_files.current_tree = tree  # only during the call (see the finally below)
    _fill_before_forking()
    _use_tree(tree)
    _write_config(config_dir, minion_config)
    sys.argv = ["salt-call", "--retcode-passthrough", "--local", "--metadata", "--out", "json",
                "-l", "quiet", "-c", config_dir] + shim_arguments(argv)
    out, err = io.StringIO(), io.StringIO()
    status = 0
    # Salt probes for many optional modules: it must find what the host has, as
    # stock salt-ssh's would, not what the controller could forward.
    with forwarding.local_imports_only(), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            _salt_call_module().SaltCall().run()
        except SystemExit as e:  # as the salt-call process would exit
            if isinstance(e.code, int):
                status = e.code & 0xFF  # sys.exit(-1) is status 255
            elif e.code is not None:
                err.write(f"{e.code}\n")
                status = 1
        except Exception:  # uncaught in salt-call: Python prints it and exits with 1
            import traceback

            traceback.print_exc()
            status = 1
    return out.getvalue(), err.getvalue(), status


def _modcache(config_dir):
    return os.path.join(config_dir, "running_data", "var", "cache", "salt", "minion", "extmods")


def ext_mods_in_place(config_dir, version, files):
    """Whether the custom modules (a file_roots' _modules, _states ...) of this version are
    unpacked here, each of their files (paths in the tarball) still there: a
    saltutil.sync_all, or a clean-up of the cache, may have removed them."""
    try:
        with open(os.path.join(config_dir, "ext_version")) as f:
            if f.read().strip() != version:
                return False
    except OSError:
        return False
    modcache = _modcache(config_dir)
    return all(os.path.isfile(os.path.join(modcache, name)) for name in files)


def unpack_ext_mods(config_dir, tarball):
    """Unpack the custom modules' tarball where salt-call looks for them, as the shim does."""
    import shutil
    import tarfile

    modcache = _modcache(config_dir)
    old_umask = os.umask(0o077)
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            if sys.version_info >= (3, 12):
                tar.extractall(path=modcache, filter="data")
            else:
                tar.extractall(path=modcache)
    finally:
        os.umask(old_umask)
    os.unlink(tarball)
    shutil.move(os.path.join(modcache, "ext_version"), os.path.join(config_dir, "ext_version"))
