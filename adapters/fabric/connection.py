"""Connection: Fabric's Connection with its remote work done over the transport.

Fabric keeps resolving host, user, port, ssh_config, connect_kwargs and
connect_timeout; open() turns them into one transport interpreter for the
host, shared by every task of the run. run() goes through Fabric's own
code path (cd, prefix, hide, warn, echo, env, pty, UnexpectedExit, Result)
with FabricRunner as its runner; sudo() runs in a persistent sudo
interpreter per user on that host (the password, from sudo.password or
`fab --prompt-for-sudo-password`, goes to sudo's stdin, never to a command
line), or where sudo starts none, under sudo as stock Fabric runs it;
put()/get() are Fabric's Transfer over TransportSFTP, which sftp() also
gives; shell() runs
the login shell on a pty; forward_local()/forward_remote() carry their tunnels
over the transport; call() runs a Python function on the host.

Settings of our own, in the config's `transport` section: `python` (the
target interpreter, default python3), `backend` ("paramiko", the default,
which connects as stock Fabric does, in-process; "openssh" runs the ssh
client, and is chosen by itself for gateways and agent forwarding),
`check_host_keys` (default "accept-new": unknown hosts are
accepted, changed keys refused, as Fabric's AutoAddPolicy accepts unknown
hosts; the openssh backend also records new keys in known_hosts, the
paramiko one, like stock Fabric, does not) and `ssh_options` (extra `ssh -o` options).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from typing import Any, Callable

import fabric
import fabric.transfer
from fabric.runners import Result
from invoke.exceptions import AuthFailure, UnexpectedExit

import transport
from adapters.fabric.file_transfer import TransportSFTP, local_os_error
from adapters.fabric.runner import FabricRunner, ShellRunner
from adapters.targets import Targets, login_shell, shared_targets
from transport.methods.ssh import SshMethod, forwarding_command

# connect_kwargs (paramiko's SSHClient.connect) that the transport honours.
HONOURED_CONNECT_KWARGS = {"key_filename", "timeout", "allow_agent", "look_for_keys", "compress",
                           "password", "passphrase", "banner_timeout", "auth_timeout",
                           "channel_timeout", "disabled_algorithms", "gss_auth",
                           "gss_deleg_creds"}
# paramiko's disabled_algorithms kinds, as the OpenSSH options whose lists they take from.
DISABLED_ALGORITHM_OPTIONS = {"ciphers": "Ciphers", "macs": "MACs", "keys": "HostKeyAlgorithms",
                              "kex": "KexAlgorithms", "pubkeys": "PubkeyAcceptedAlgorithms"}
# gss_* flags with an OpenSSH equivalent.
GSSAPI_OPTIONS = {"gss_auth": "GSSAPIAuthentication", "gss_deleg_creds": "GSSAPIDelegateCredentials"}


def _transport_setting(c: fabric.Connection, key: str, default: Any) -> Any:
    """A setting of the config's `transport` section, as c's config has it."""
    section = c.config.get("transport") or {}
    return section.get(key, default)


def _login_settings(c: fabric.Connection) -> dict[str, Any]:
    """How c logs in (key files, agent, host keys, timeout, compression and extra ssh
    options) as SshMethod arguments; what has no equivalent is refused by name."""
    connect_kwargs = dict(c.connect_kwargs)
    for key in connect_kwargs:
        if key not in HONOURED_CONNECT_KWARGS:
            raise ValueError(f"{c.host}: connect_kwargs.{key} is not supported over the "
                             "transport; supported: " + ", ".join(sorted(HONOURED_CONNECT_KWARGS)))
    ssh_options: dict[str, str] = dict(_transport_setting(c, "ssh_options", None) or {})
    key_filename = connect_kwargs.get("key_filename") or []
    key_files = [key_filename] if isinstance(key_filename, str) else list(key_filename)
    if connect_kwargs.get("allow_agent") is False:
        ssh_options["IdentityAgent"] = "none"
    # look_for_keys=False: ssh tries its default key files only when no key is given.
    settings: dict[str, Any] = {
        "identity_file": [os.path.expanduser(key) for key in key_files] or None,
        "ssh_options": ssh_options,
        "check_host_keys": _transport_setting(c, "check_host_keys", "accept-new"),
        "compression": bool(connect_kwargs.get("compress", False)),
    }
    # One deadline covers every phase here (each has its own in paramiko): the longest.
    timeouts = [c.connect_timeout] + [connect_kwargs.get(key) for key in (
        "timeout", "banner_timeout", "auth_timeout", "channel_timeout")]
    if any(timeouts):
        settings["connect_timeout"] = max(float(t) for t in timeouts if t)
    ssh_options.update(_disabled_algorithms(c.host, connect_kwargs.get("disabled_algorithms")))
    for key, option in GSSAPI_OPTIONS.items():
        if key in connect_kwargs:
            ssh_options[option] = "yes" if connect_kwargs[key] else "no"
    # What fab --prompt-for-login-password and --prompt-for-passphrase set.
    for secret in ("password", "passphrase"):
        if connect_kwargs.get(secret) is not None:
            settings[secret] = str(connect_kwargs[secret])
    return settings


def _disabled_algorithms(host: str, disabled: Any) -> dict[str, str]:
    """paramiko's disabled_algorithms ({"kex": [...], ...}) as OpenSSH options that take
    those algorithms out of ssh's defaults ("-a,b")."""
    if not disabled:
        return {}
    if not hasattr(disabled, "items"):  # a dict, or invoke's view of a config's table
        raise ValueError(f"{host}: connect_kwargs.disabled_algorithms is a mapping of kinds "
                         f"({', '.join(DISABLED_ALGORITHM_OPTIONS)}) to lists of names")
    options = {}
    for kind, names in disabled.items():
        if kind not in DISABLED_ALGORITHM_OPTIONS:
            raise ValueError(f"{host}: connect_kwargs.disabled_algorithms.{kind} is not a kind "
                             f"OpenSSH can disable; kinds: {', '.join(DISABLED_ALGORITHM_OPTIONS)}")
        names = [names] if isinstance(names, str) else list(names or ())
        if names:
            options[DISABLED_ALGORITHM_OPTIONS[kind]] = "-" + ",".join(names)
    return options


def _gateway_command(c: fabric.Connection) -> str | None:
    """c's gateway as a ProxyCommand, or None without one.

    A gateway Connection (with gateways of its own, and at the far end perhaps a
    ProxyCommand string) becomes a chain of `ssh -W` hops, each logging in with
    its own Connection's key files and settings, as Fabric's gateways do.
    """
    hops = []
    gateway = c.gateway
    while isinstance(gateway, fabric.Connection):
        hops.insert(0, gateway)
        gateway = gateway.gateway
    if not hops:
        return gateway or None  # a ProxyCommand string of the user's, or no gateway
    methods = [SshMethod(hop.host, port=hop.port, user=hop.user, **_login_settings(hop))
               for hop in hops]
    return forwarding_command(methods, c.host, c.port, first_proxy=gateway or None)


class SudoAuthFailure(AuthFailure):
    """sudo refused: a wrong password, or none configured where one is needed."""

    def __init__(self, result: Result, prompt: str, reason: str) -> None:
        super().__init__(result, prompt)
        self.reason = reason

    def __str__(self) -> str:
        return f"sudo on {self.result.connection.host}: {self.reason}"


class _PermissionBitsOnly(fabric.transfer.Transfer):
    def get(self, remote: str, local: Any = None, preserve_mode: bool = True) -> Any:
        result = super().get(remote, local, preserve_mode=False)
        if preserve_mode and isinstance(result.local, str):
            os.chmod(result.local, stat.S_IMODE(self.sftp.stat(result.remote).st_mode) & 0o777)
        return result


class Connection(fabric.Connection):
    """A fabric.Connection whose commands, sudo, transfers and calls use the transport."""

    def __init__(self, *args: Any, targets: Targets | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # _set: a Connection is a config proxy, so plain attribute sets would land in the config.
        self._set(_targets=targets or shared_targets(), _context=None, _transport_sftp=None)

    # -- the transport context -------------------------------------------------

    def transport_context(self) -> transport.Context:
        """This host's transport context, opening it (or re-opening a lost one) on first use."""
        context = self._context
        if context is None or not context.alive:
            context = self._targets.ssh(self.host, port=self.port, user=self.user,
                                        python=_transport_setting(self, "python", "python3"),
                                        **self._ssh_options())
            self._targets.hold(context, self)
            self._set(_context=context)
        return context

    def _ssh_options(self) -> dict[str, Any]:
        """Fabric's connection settings as Router.ssh arguments; refuse what has no equivalent."""
        options = _login_settings(self)
        if self.forward_agent:
            options["ssh_options"]["ForwardAgent"] = "yes"
        gateway = _gateway_command(self)
        if gateway is not None:
            for setting in ("ProxyJump", "ProxyCommand"):
                if setting in options["ssh_options"]:
                    raise ValueError(f"{self.host}: a gateway and transport.ssh_options {setting} "
                                     "both say how to reach the host; keep one")
            options["ssh_options"]["ProxyCommand"] = gateway
        options["backend"] = _transport_setting(self, "backend", None) or "auto"
        return options

    def login_shell(self) -> str:
        """The login shell of the user Fabric connects as: what sshd runs commands with."""
        return login_shell(self.transport_context())

    # -- Fabric's Connection interface -------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._context is not None and self._context.alive

    def open(self) -> None:
        self.transport_context()

    def close(self) -> None:
        """As after stock Fabric's close(), the next command logs in again (a new
        interpreter); the old one (and its sudo interpreters) is shut down at once
        unless another Connection to the host still uses it. (Without close(), one
        interpreter per host serves every task of the run, and the Executor shuts it
        down at the end.)"""
        context = self._context
        self._set(_context=None, _transport_sftp=None)
        if context is not None:
            self._targets.retire(context, self)

    def sudo(self, command: str, **kwargs: Any) -> Result:
        """The command in a persistent interpreter as the sudo user, given the password
        once; where sudo will not start one (Targets.sudo_if_allowed), under sudo as
        stock Fabric runs it, so what sudo allows there works here too."""
        if kwargs.get("dry", self.config.run.dry):
            return super().sudo(command, **kwargs)  # shown, not run (nor sudo started)
        user = kwargs.get("user") or self.config.sudo.user or "root"
        password = kwargs.get("password") or self.config.sudo.password
        login = self.transport_context()  # an AuthError here is ssh's, not sudo's
        try:
            context = self._targets.sudo_if_allowed(login, user, password)
        except transport.AuthError as e:  # the password was refused
            result = Result(connection=self, command=command, exited=-1, stdout="",
                            stderr=str(e), hide=("stdout", "stderr"))
            raise SudoAuthFailure(result, self.config.sudo.prompt,
                                  "the password was refused") from None
        if context is None:  # FabricRunner runs the command line (sudo -n without a password)
            try:
                return super().sudo(command, **kwargs)
            except AuthFailure as e:
                raise SudoAuthFailure(e.result, e.prompt, "the password was refused") from None
            except UnexpectedExit as e:
                if password is not None or "a password is required" not in (
                        e.result.stdout + e.result.stderr):
                    raise
                raise SudoAuthFailure(e.result, self.config.sudo.prompt,
                                      "a password is needed and none was given: set "
                                      "sudo.password in the Fabric config or run fab "
                                      "--prompt-for-sudo-password") from None
        given_user = kwargs.pop("user", self.config.sudo.user)
        kwargs.pop("password", None)
        runner = self._remote_runner()
        runner.target = context
        # As invoke's _sudo words it (its echo shows that command line).
        env_flags = f"--preserve-env='{','.join(kwargs['env'])}' " if kwargs.get("env") else ""
        user_flags = f"-H -u {given_user} " if given_user is not None else ""
        runner.echo_prefix = f"sudo -S -p '{self.config.sudo.prompt}' {env_flags}{user_flags}"
        return self._run(runner, command, **kwargs)

    def _remote_runner(self) -> FabricRunner:
        # Not through config.runners.remote: fab shares one config object with every
        # Connection, stock ones included.
        return FabricRunner(context=self, inline_env=self.inline_ssh_env)

    def sftp(self) -> TransportSFTP:
        """The SFTP client Fabric's put() and get() use: one per Connection until it
        closes, as stock's, so chdir() holds for later transfers."""
        context = self.transport_context()
        client = self._transport_sftp
        if client is None or client.context is not context:
            client = TransportSFTP(context)
            self._set(_transport_sftp=client)
        return client

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """Fabric's get(), the local file taking the remote one's permission bits only (as
        transport's own get: a host never makes a setuid, setgid or sticky file here;
        stock Fabric copies them too)."""
        return _PermissionBitsOnly(self).get(*args, **kwargs)

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run fn(*args, **kwargs) on the host (modules it needs are forwarded); return its value."""
        return self.transport_context().call(fn, *args, **kwargs)

    def _unavailable(self, what: str) -> Any:
        raise NotImplementedError(f"{what} is not available over the transport; "
                                  "use a stock fabric.Connection for it")

    def create_session(self) -> Any:
        return self._unavailable("an SSH session channel")

    def shell(self, **kwargs: Any) -> Result:
        """An interactive login shell on a pty, as Fabric's shell(): what you type (or
        in_stream) goes to it, the session comes back as stdout. It takes Fabric's
        kwargs for it (encoding, env, in_stream, replace_env, watchers); the rest of
        run()'s options are Fabric's defaults, not the config's, as stock."""
        allowed = ("encoding", "env", "in_stream", "replace_env", "watchers")
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise TypeError(f"shell() got unexpected keyword arguments: {unknown!r}")
        options = dict(self.config.global_defaults()["run"])
        options.update({key: kwargs.get(key, self.config.run[key]) for key in allowed})
        options["pty"] = True
        return ShellRunner(context=self, inline_env=self.inline_ssh_env).run(None, **options)

    @contextlib.contextmanager
    def forward_local(self, local_port: int, remote_port: int | None = None,
                      remote_host: str = "localhost", local_host: str = "localhost") -> Iterator[None]:
        """Fabric's forward_local (as `ssh -L`), its tunnels carried by the transport."""
        with self.transport_context().forward_local(local_port, remote_port, remote_host,
                                                    local_host):
            yield

    @contextlib.contextmanager
    def forward_remote(self, remote_port: int, local_port: int | None = None,
                       remote_host: str = "127.0.0.1", local_host: str = "localhost") -> Iterator[None]:
        """Fabric's forward_remote (as `ssh -R`), its tunnels carried by the transport; a
        port the host cannot listen on is the OSError it was there, naming the host."""
        context = self.transport_context()
        try:
            forward = context.forward_remote(remote_port, local_port, remote_host, local_host)
        except transport.RemoteError as e:
            raise local_os_error(context, e) from None
        with forward:
            yield
