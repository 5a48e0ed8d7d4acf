"""The hooks that route selected salt-ssh hosts through the transport.

install() wraps six salt-ssh methods; each is a no-op for hosts whose roster
entry does not select the transport (the master loop's, for runs without one):
- Single.__init__: notes the host's settings and gives it a FastShell;
- Single.run: refuses a host whose roster entry asks what the transport cannot
  do, with an error naming the key, before anything runs there;
- Single.cmd_block: instead of the shim (thin tarball, Python started three
  times, a salt-call process per function), syncs Salt's file set into the
  host's file cache, sends the custom modules when they change, and runs
  salt-call in the host's persistent interpreter, returning what the shim
  would have printed;
- SSH.handle_routine (one per host process): starts opening the host's
  context before Salt sets the host up (open_early), and shuts the host's
  contexts down when the host's work is done;
- SSH.handle_ssh (the master loop): in runs with a fast host, looks at a host
  process as soon as it ends instead of at its next 0.1 s poll (master_loop);
- SSH.key_deploy: a fast host's refused login stands as it is, without stock's
  offer to install salt-ssh's key with the ssh password.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import posixpath
import re
import threading
from concurrent.futures import Future, InvalidStateError
from typing import Any

import transport
from adapters.salt import hosts, master_loop
from adapters.salt.compat import check_salt_version
from adapters.salt.remote import salt_call
from adapters.salt.shell import FastShell
from adapters.targets import Targets
from transport.errors import shown_value

log = logging.getLogger(__name__)

_targets: Targets | None = None
_trees: dict[int, tuple[str, int]] = {}  # context id -> (tree there, file service handle)
_hosts: dict[tuple, transport.Context] = {}
_early: dict[tuple, Future] = {}  # host key -> its context, opened while salt-ssh sets up
WIPE_TIMEOUT = 60.0  # for removing a host's file cache at the end of a --wipe run
_wiped: set[transport.Context] = set()  # hosts run with --wipe: their file cache goes at the end


def _forget_the_parents_hosts() -> None:
    """In a forked process (a wrapper's nested salt-ssh forks again): the parent's
    contexts, trees and file services are not this process's to use."""
    global _targets
    _targets = None
    _trees.clear()
    _hosts.clear()
    _early.clear()
    _wiped.clear()
    hosts.forget_remote_forwards()


os.register_at_fork(after_in_child=_forget_the_parents_hosts)


def _process_targets() -> Targets:
    global _targets
    if _targets is None:
        _targets = Targets()
    return _targets


def _close_process_targets() -> None:
    global _targets
    for context in _wiped:
        if context.alive:
            try:
                context.call_async(salt_call.wipe_cache).result(timeout=WIPE_TIMEOUT)
            except transport.TransportError as e:
                log.warning("transport: --wipe: the file cache on %s stays: %s", context.name, e)
    _wiped.clear()
    targets, _targets = _targets, None
    _trees.clear()
    _hosts.clear()
    for future in _early.values():  # one still opening closes what it opens
        future.cancel()
    _early.clear()
    hosts.forget_remote_forwards()
    if targets is not None:
        targets.close()


def _host_key(target: dict[str, Any]) -> tuple:
    return (target.get("host"), target.get("port"), target.get("user"), bool(target.get("sudo")),
            target.get("sudo_user"))


def open_early(opts: dict[str, Any], target: dict[str, Any]) -> None:
    """Start opening a fast host's context in the background, from the roster entry
    handle_routine got: the connection is made while salt-ssh builds the host's Single
    (Salt's wrappers load) and the file set's manifest is read, not after. context_of
    takes it, or the error it ended with. Not for raw shell runs, which use only the
    login context, nor for a roster entry Single.run refuses."""
    try:
        settings = hosts.settings_for(dict(target, relenv=bool(target.get("relenv")
                                                                or opts.get("relenv"))))
    except hosts.RosterError:
        return
    if settings is None or opts.get("raw_shell"):
        return
    targets = _process_targets()
    future: Future = Future()

    def open_context() -> None:
        try:
            context = hosts.open_context(targets, target, opts, settings)
        except BaseException as e:  # context_of raises it where salt-ssh reports it
            with contextlib.suppress(InvalidStateError):  # cancelled: nobody will ask
                future.set_exception(e)
            return
        try:
            future.set_result(context)
        except InvalidStateError:  # cancelled: the host's contexts were closed meanwhile
            targets.close()

    _early[_host_key(target)] = future
    threading.Thread(target=open_context, name=f"transport-open-{target.get('host')}",
                     daemon=True).start()


def context_of(single: Any) -> transport.Context:
    """The host's context. The first Single of a host (the one salt-ssh made from the
    roster, with the master's options) opens it, or takes the one open_early started;
    the nested ones Salt's wrappers make, whose options come from the target, reuse it."""
    target = single.target
    key = _host_key(target)
    context = _hosts.get(key)
    if context is None or not context.alive:
        early = _early.pop(key, None)
        if early is not None:
            context = early.result()
        else:
            context = hosts.open_context(_process_targets(), target, single.opts,
                                         single.transport_settings)
        _hosts[key] = context
    return context


def login_context_of(single: Any) -> transport.Context:
    """The host's context as the roster user, before any sudo (the same one context_of
    builds on: Targets keeps one per connection)."""
    return hosts.login_context(_process_targets(), single.target, single.opts,
                               single.transport_settings)


def _tree_on(context: transport.Context, host: str) -> tuple[str, int]:
    from adapters.salt import file_set

    known = _trees.get(context.context_id)
    if known is None:
        tree, files, sent = file_set.sync(context)
        log.info("transport: salt file cache on %s: %d files (%d bytes) sent", host, files, sent)
        known = _trees[context.context_id] = (tree, context.serve(file_set.file_for))
    return known


def _report_served(host: str) -> None:
    from adapters.salt import file_set

    if file_set.served:
        log.info("transport: salt files sent to %s on first import (or before a fork): "
                 "%d files (%d bytes)", host,
                 len(file_set.served), sum(file_set.served))
        file_set.served.clear()


def _deploy_ext_mods(single: Any, context: transport.Context) -> None:
    """Custom modules (file_roots' _modules, _states ...): sent unless the host has this
    version's files in place (checked at each command: salt-call itself may remove them)."""
    from salt.client.ssh import mod_data

    single.mods = mod_data(single.fsclient)
    version = single.mods.get("version")
    if not single.mods.get("file"):
        return
    if context.call(salt_call.ext_mods_in_place, single.thin_dir, version,
                    _ext_mods_files(single.mods["file"])):
        return
    tarball = posixpath.join(single.thin_dir, "salt-ext_mods.tgz")
    context.call(os.makedirs, single.thin_dir, 0o700, True)
    context.put(single.mods["file"], tarball, mode=0o600)
    context.call(salt_call.unpack_ext_mods, single.thin_dir, tarball)


@functools.lru_cache(maxsize=8)
def _ext_mods_files(tarball: str) -> list[str]:
    """The files of a custom modules' tarball (named by its version), but its version file."""
    import tarfile

    with tarfile.open(tarball, "r:gz") as tar:
        return [m.name for m in tar.getmembers() if m.isfile() and m.name != "ext_version"]


def fast_cmd_block(single: Any) -> tuple[str, str, int]:
    """What Single.cmd_block returns, from salt-call run in the host's interpreter."""
    from salt.client.ssh import _convert_args

    from adapters.salt import file_set

    single.argv = _convert_args(single.argv)
    host = single.target.get("host")
    try:
        file_set.configure(single.opts)
        file_set.manifest()  # read while the connection open_early started is made
        context = context_of(single)
        refused = _python_too_old(single, context)
        if refused is not None:
            return refused
        tree, file_service = _tree_on(context, host)
        _deploy_ext_mods(single, context)
        answer = context.call(salt_call.run, tree, single.thin_dir, single.minion_config,
                              single.argv, file_service, hosts.umask_of(single.cmd_umask),
                              single.wipe)
        if not (isinstance(answer, tuple) and len(answer) == 3 and isinstance(answer[0], str)
                and isinstance(answer[1], str) and type(answer[2]) is int):
            raise transport.ProtocolError(f"{context.name}: malformed answer from salt-call: "
                                          f"{shown_value(answer)}")
        stdout, stderr, retcode = answer
        if single.wipe:
            _wiped.add(context)
    except transport.TransportError as e:
        return _as_stock_reports(single, e)
    except hosts.RosterError as e:  # found only when connecting (the master's options too)
        return "", f"ERROR: {e}", 1
    except Exception as e:  # reported for this host like any failure there; the others go on
        log.exception("transport: salt on %s failed", host)
        return "", f"ERROR: transport: {type(e).__name__}: {e}", 1
    finally:
        _report_served(host)
    return stdout.strip(), stderr.strip(), retcode


def _python_too_old(single: Any, context: transport.Context) -> tuple[str, str, int] | None:
    """A host whose Python is older than the master's Salt needs (Salt 3008: 3.8), as stock
    reports an interpreter too old (the shim's status and Salt's advice), naming both
    versions; None for one that will do. Salt's files would otherwise fail there one
    by one (a SyntaxError, No module named '_contextvars')."""
    import salt.defaults.exitcodes

    from transport.hints import python_meets

    salt_version, requires = _salt_requirement()
    if python_meets(context.python_version, requires):
        return None
    status = salt.defaults.exitcodes.EX_THIN_PYTHON_INVALID
    stderr = (f"ERROR: transport: {context.name}: Salt {salt_version} needs "
              f"Python {requires}, and {context.python} there is Python "
              f"{context.python_version}: name a newer interpreter in the roster "
              f"(transport: {{python: /usr/bin/python3}})")
    advice = single.categorize_shim_errors("", stderr, status)
    return (f"ERROR: {advice}" if advice else ""), stderr, status


@functools.lru_cache(maxsize=1)
def _salt_requirement() -> tuple[str, str]:
    """(Salt's version, its Requires-Python), read once per process (every remote
    function asks): ("", "") for Salt run from a source tree, which sets no requirement."""
    from importlib import metadata

    try:
        found = metadata.metadata("salt")
    except metadata.PackageNotFoundError:
        return "", ""
    return found.get("Version") or "", found.get("Requires-Python") or ""


def _as_stock_reports(single: Any, error: transport.TransportError) -> tuple[str, str, int]:
    """A host the transport could not reach or start on, as stock's Single reports it
    (stdout, stderr, status): ssh's own messages, as it printed them, which salt-ssh
    shows as the host's result; where no Python interpreter was found, the shim's status
    (EX_THIN_PYTHON_INVALID), which salt-ssh exits with, and Salt's advice for it; an
    unknown host key as stock refuses it (254); the host's interpreter ending while
    salt-call ran in it (os._exit in a module) with its status, as stock's salt-call
    process ends with it; otherwise the error, naming the host, with ssh's 255."""
    import salt.defaults.exitcodes

    ended = isinstance(error, transport.Disconnected) and re.match(
        r"\S+ exited with status (\d+)\b", error.reason)
    if ended and ended.group(1) != "255":  # (255: ssh's own failure)
        status = int(ended.group(1))
        return "", (f"ERROR: transport: {error.host}: the host's Python interpreter exited "
                    f"with status {status} while Salt ran there"), status
    if isinstance(error, transport.HostKeyError) and not error.changed:
        # Stock answers ssh's question "continue connecting?" with no, and says so.
        return (f"The host key needs to be accepted, to auto accept run salt-ssh with the -i "
                f"flag:\n{error.reason}", "", 254)
    if isinstance(error, transport.ConnectError):
        if error.reason.startswith("no usable Python interpreter"):
            status = salt.defaults.exitcodes.EX_THIN_PYTHON_INVALID
            stderr = f"ERROR: {error}"
            advice = single.categorize_shim_errors("", stderr, status)
            return (f"ERROR: {advice}" if advice else ""), stderr, status
        if error.ssh_messages and not isinstance(error, transport.AuthError):
            return "", error.ssh_messages, 255
    return "", str(error), 255


def _refuse_fast_hosts(ssh: Any, reason: str) -> None:
    """On an untested Salt, hosts that ask for the transport fail with reason (the others
    run as usual) instead of running stock without a word."""
    if getattr(ssh.Single, "_transport_refusal", False):
        return
    original_run = ssh.Single.run

    @functools.wraps(original_run)
    def run(self: Any, *args: Any, **kwargs: Any) -> tuple[str, str, int]:
        if hosts.selects_transport(getattr(self, "target", None) or {}):
            return "", f"ERROR: transport: {reason}", 1
        return original_run(self, *args, **kwargs)

    ssh.Single.run = run
    ssh.Single._transport_refusal = True


def install() -> None:
    """Wrap salt-ssh's Single and SSH (once per process)."""
    import salt.client.ssh as ssh

    if getattr(ssh.Single, "_transport_hooks", False):
        return
    try:
        check_salt_version()
    except ImportError as e:
        _refuse_fast_hosts(ssh, str(e))
        raise  # Salt's loader logs it too
    original_init = ssh.Single.__init__
    original_run = ssh.Single.run
    original_cmd_block = ssh.Single.cmd_block
    original_handle_routine = ssh.SSH.handle_routine
    original_key_deploy = ssh.SSH.key_deploy

    @functools.wraps(original_init)
    def init(self: Any, opts: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        relenv = bool(kwargs.get("relenv") or opts.get("relenv"))
        if relenv and hosts.selects_transport(kwargs):
            # Refused below. Stock's relenv set-up connects from __init__: keep it from
            # running for this host (a copy, as opts is shared with the other hosts).
            opts = dict(opts, relenv=False)
            kwargs["relenv"] = False
        original_init(self, opts, *args, **kwargs)
        self.transport_error = None
        try:
            self.transport_settings = hosts.settings_for(dict(self.target, relenv=relenv))
        except hosts.RosterError as e:
            self.transport_settings, self.transport_error = None, str(e)
        if self.transport_settings is not None:
            self.shell = FastShell(functools.partial(context_of, self),
                                   functools.partial(login_context_of, self),
                                   self.target.get("host"), self.thin_dir)

    @functools.wraps(original_run)
    def run(self: Any, *args: Any, **kwargs: Any) -> tuple[str, str, int]:
        if getattr(self, "transport_error", None):
            return "", f"ERROR: {self.transport_error}", 1  # nothing is run on that host
        return original_run(self, *args, **kwargs)

    @functools.wraps(original_cmd_block)
    def cmd_block(self: Any, is_retry: bool = False) -> tuple[str, str, int]:
        if getattr(self, "transport_settings", None) is None:
            return original_cmd_block(self, is_retry)
        return fast_cmd_block(self)

    @functools.wraps(original_handle_routine)
    def handle_routine(self: Any, que: Any, opts: dict[str, Any], host: str,
                       target: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            try:
                open_early(opts, target)
            except Exception:  # context_of then opens it, and reports what goes wrong
                log.debug("transport: cannot start connecting to %s early", host, exc_info=True)
            return original_handle_routine(self, que, opts, host, target, *args, **kwargs)
        finally:
            _close_process_targets()

    @functools.wraps(original_key_deploy)
    def key_deploy(self: Any, host: str, ret: dict[str, Any]) -> Any:
        # Stock reads a host's "Permission denied" as a refused key and asks, on stdin,
        # to install salt-ssh's key with the ssh password. A fast host has no such
        # remedy (its passwd was tried already; FastShell.copy_id refuses): its error stands.
        if self.opts.get("ssh_key_deploy") or not hosts.selects_transport(
                self.targets.get(host) or {}):
            return original_key_deploy(self, host, ret)
        # What stock returns when it has nothing to do: ret (3006), (ret, None) (3008). A
        # return it knows to be no error shows which, and does nothing else.
        untouched = original_key_deploy(self, host, {host: {}})
        return (ret, None) if isinstance(untouched, tuple) else ret

    ssh.Single.__init__ = init
    ssh.Single.run = run
    ssh.Single.cmd_block = cmd_block
    ssh.SSH.handle_routine = handle_routine
    ssh.SSH.key_deploy = key_deploy
    master_loop.install(ssh, hosts.selects_transport)
    ssh.Single._transport_hooks = True
