"""The paramiko backend of the ssh method: an in-process SSH client.

For large fan-outs, where an OpenSSH client process per host costs the
controller a key exchange each in a separate process, `backend="paramiko"`
connects from inside the controller (TCP_NODELAY set, compression off unless
asked for). The connection is made on the calling thread, so a Group
connects hosts in parallel. The channel's bytes are moved by one pump thread
per connection between the channel and a socket pair whose other end the
core's stream reads, so the rest of the transport is the same for both
backends.

It honours host, port, user, identity_file, connect_timeout, check_host_keys
and these ssh_options: IdentityFile, IdentitiesOnly, UserKnownHostsFile,
StrictHostKeyChecking, ConnectTimeout, Port, User, Compression,
ServerAliveInterval with ServerAliveCountMax (keepalives that want an answer:
a host that gives none for interval x count seconds is hung up on, whether it
has gone from the network or its sshd hangs while its kernel still
acknowledges TCP), IdentityAgent=none (no agent), and BatchMode (paramiko
never prompts).
Other ssh_options, and ~/.ssh/config, are OpenSSH's only: they are refused
with a clear error. Host keys are checked against ~/.ssh/known_hosts (or
UserKnownHostsFile, read as paramiko_known_hosts says) unless check_host_keys
or StrictHostKeyChecking says otherwise; a key accepted under "accept-new" is
appended to the UserKnownHostsFile given, or, without one, kept for the
connection only (as stock Fabric does).
It runs on the controller only (no via=).
"""

from __future__ import annotations

import getpass
import os
import select
import socket
import threading
import time

from transport.errors import AuthError, ConnectError
from transport.methods.ssh import SshMethod, host_key_changed, host_key_unknown

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from transport.bootstrap import Bootstrap

HONOURED = {"IdentityFile", "IdentitiesOnly", "UserKnownHostsFile", "StrictHostKeyChecking",
            "ConnectTimeout", "Port", "User", "BatchMode", "Compression",
            "ServerAliveInterval", "ServerAliveCountMax", "IdentityAgent"}
CHUNK = 256 * 1024
EXIT_STATUS_WAIT = 2.0


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection with Nagle's algorithm off from its first packet.

    paramiko leaves it on; during the handshake a small write then waits for
    the server's delayed ACK, ~45 ms per connection on loopback.
    """
    sock = socket.create_connection((host, port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _DataArrived:
    """The event paramiko's reading thread sets when a channel's stdout or stderr buffer
    takes data or ends: a byte on a socket pair the pump selects on. Only the pump
    takes the bytes, before it looks at the buffers, so data that lands after it
    looked always leaves one behind.

    Not channel.fileno(): its pipe is set by paramiko's thread and cleared by the
    reader, with nothing ordering the set of one buffer against the clear of the
    other (paramiko issue #1235). When a stderr line and a reply arrived together,
    the pipe could end up clear with the reply in the buffer, and the caller waited
    until the target happened to send something else: for ever, for a last call.
    """

    def __init__(self) -> None:
        self.reader, self._writer = socket.socketpair()
        self.reader.setblocking(False)
        self._writer.setblocking(False)

    def set(self) -> None:
        """Any thread (paramiko's, holding a buffer's lock): wake the pump."""
        try:
            self._writer.send(b"x")
        except OSError:
            pass  # full (the pump has bytes to wake it already) or closed (it has ended)

    def clear(self) -> None:
        """paramiko's reader found a buffer empty: the pump drains the bytes itself."""

    def drain(self) -> None:
        try:
            while self.reader.recv(4096):
                pass
        except OSError:
            pass  # nothing left (EAGAIN)

    def close(self) -> None:
        self.reader.close()
        self._writer.close()


class ParamikoChild:
    """Looks like a spawned child to the core's Connection: fds, poll(), kill() and
    terminate()."""

    def __init__(self, client: Any, channel: Any, keep_alive: KeepAlive | None = None) -> None:
        self.client = client
        self.channel = channel
        self._keep_alive = keep_alive
        ours, self._theirs = socket.socketpair()
        err_ours, self._err_theirs = socket.socketpair()
        self.stdin = self.stdout = ours.detach()
        self.stderr = err_ours.detach()
        # Not channel.fileno(): see _DataArrived.
        self._arrived = _DataArrived()
        channel.in_buffer.set_event(self._arrived)
        channel.in_stderr_buffer.set_event(self._arrived)
        if keep_alive is not None:
            keep_alive.on_timeout = self._say
        self.pid = -1
        self.program = "the ssh session"  # how a lost context's message names it
        self.status: int | None = None
        self._thread = threading.Thread(target=self._pump, name="transport-paramiko", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        channel, theirs, arrived = self.channel, self._theirs, self._arrived
        watch = [arrived.reader, theirs]
        try:
            while arrived.reader in watch:
                readable, _, _ = select.select(watch, [], [], 5.0)
                if theirs in readable:
                    data = theirs.recv(CHUNK)
                    if data:
                        channel.sendall(data)
                    else:
                        channel.shutdown_write()
                        watch.remove(theirs)
                if arrived.reader in readable:
                    arrived.drain()  # before looking: what lands after that wakes us again
                    if self._keep_alive is not None:
                        self._keep_alive.heard()
                    if channel.recv_stderr_ready():
                        self._err_theirs.sendall(channel.recv_stderr(CHUNK))
                    if channel.recv_ready():
                        theirs.sendall(channel.recv(CHUNK))
                    if channel.recv_ready() or channel.recv_stderr_ready():
                        arrived.set()  # more than a chunk: the next round reads on
                    elif channel.eof_received or channel.closed:
                        watch.remove(arrived.reader)
        except (OSError, EOFError):
            pass  # closed under a write (a target that exits before reading its payload)
        finally:
            # Whatever the server said on stderr explains how the session ended: relay
            # it on every way out, not only the orderly one.
            try:
                while channel.recv_stderr_ready():
                    self._err_theirs.sendall(channel.recv_stderr(CHUNK))
            except OSError:
                pass
            # The exit status may follow the end of the output: give it a moment.
            self.channel.status_event.wait(EXIT_STATUS_WAIT)
            # No status (or paramiko's -1, for a signal): the connection was lost, for
            # which OpenSSH's client exits with 255.
            status = self.channel.exit_status if self.channel.status_event.is_set() else -1
            self.status = status if status >= 0 else 255
            for sock in (theirs, self._err_theirs):
                sock.close()
            if self._keep_alive is not None:
                self._keep_alive.stop()
            channel.close()
            self.client.close()
            arrived.close()  # last: paramiko's thread sets it until the channel is closed

    def _say(self, text: str) -> None:
        """Write text on the child's stderr, as ssh writes its own messages."""
        try:
            self._err_theirs.sendall(text.encode())
        except OSError:
            pass  # closed: the session has ended already

    def poll(self) -> int | None:
        return self.status

    def kill(self) -> None:
        _hang_up(self.client)

    def terminate(self) -> None:
        """As kill(): a session has no gentler end to ask for (a Connection giving up on a
        start calls it)."""
        _hang_up(self.client)


class KeepAlive:
    """OpenSSH's ServerAliveInterval and ServerAliveCountMax for a paramiko client.

    paramiko's own keepalives expect no answer, so a host whose sshd hangs while
    its kernel still acknowledges TCP goes unnoticed. Here, as in OpenSSH, a
    connection that has heard nothing from the server for interval seconds asks
    it for an answer (keepalive@openssh.com, which any server answers, if only
    to refuse it), and one that has heard nothing for interval x count seconds
    (and at least one interval since it asked) is hung up on: its calls then fail
    as for a lost connection. Output from the channel counts as hearing from the
    server (heard()), so a busy connection sends no requests.

    The request waits for its answer on a thread of its own, through paramiko's
    global_request(wait=True), which keeps one completion event per connection:
    nothing else may make such requests (or renegotiate keys) on this client.
    """

    REQUEST = "keepalive@openssh.com"

    def __init__(self, client: Any, interval: float, count: int, host: str) -> None:
        self._client = client
        self._host = host
        # Told what OpenSSH's client says on giving up (ParamikoChild relays it as stderr).
        self.on_timeout: Callable[[str], None] | None = None
        self._transport = client.get_transport()
        self._interval = interval
        self._patience = interval * max(1, count)
        self._heard = time.monotonic()
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, name="transport-paramiko-alive", daemon=True).start()

    def heard(self) -> None:
        """The server has just said something."""
        self._heard = time.monotonic()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        asking: threading.Thread | None = None
        asked_at: float | None = None  # since when a request waits for its answer
        while not self._stopped.wait(self._interval) and self._transport.is_active():
            now = time.monotonic()
            if asked_at is not None and self._heard >= asked_at:
                asked_at = None
            silence = now - self._heard
            if asked_at is not None and silence >= self._patience and now - asked_at >= self._interval:
                if self.on_timeout is not None:
                    self.on_timeout(f"Timeout, server {self._host} not responding.\n")
                _hang_up(self._client)
                return
            if silence >= self._interval and (asking is None or not asking.is_alive()):
                asking = threading.Thread(target=self._ask, name="transport-paramiko-ask",
                                          daemon=True)
                asking.start()
                if asked_at is None:
                    asked_at = now

    def _ask(self) -> None:
        try:
            # Returns on the answer, or (None) once the connection is closed.
            self._transport.global_request(self.REQUEST, wait=True)
        except Exception:  # not sent (the connection failed, or a key exchange never
            return         # ended): no answer, and the watch hangs up in time
        if self._transport.is_active():
            self.heard()


def _fingerprint(key: Any) -> str:
    """A host key's SHA256 fingerprint, as OpenSSH shows it."""
    import base64
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _hang_up(client: Any) -> None:
    """Close client's connection, even while a thread is stuck writing to it (a peer that
    stopped reading): shutting the socket down wakes that thread, which holds the
    locks a channel's close would wait for."""
    transport = client.get_transport()
    if transport is not None:
        try:
            transport.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    client.close()


def _quiet_unless_logging_is_set_up() -> None:
    """paramiko logs each failed connection with its traceback, which logging's last
    resort prints when the application has set up no logging: the ConnectError says it."""
    import logging

    logger = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


class ParamikoSshMethod(SshMethod):
    """SshMethod over paramiko instead of the OpenSSH client."""

    def __init__(self, host: str, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        unknown = sorted(set(self.ssh_options) - HONOURED)
        if unknown:
            raise ValueError(f"ssh_options {', '.join(unknown)} need the OpenSSH backend "
                             "(backend='openssh'); the paramiko backend does not honour them")

    _abandoned = False
    _socket: socket.socket | None = None

    def options(self) -> dict[str, Any]:
        return {}  # password and passphrase go to paramiko (no ssh client to answer)

    def abandon(self) -> None:
        """Any thread: end a start_process under way on another thread (its router is
        closing): waits for the server end at once, and no new connection is made."""
        self._abandoned = True
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def start_process(self, bootstrap: Bootstrap, name: str) -> ParamikoChild:
        """Connect, authenticate and start the first stage; raise ConnectError/AuthError."""
        try:
            return self._start_process(bootstrap, name)
        except Exception:
            # Abandoned under way, whatever broke (an EOFError, a refusal read as an
            # authentication failure) broke because its router closed, not the host.
            if self._abandoned:
                raise ConnectError(name, "abandoned: its router closed") from None
            raise

    def _start_process(self, bootstrap: Bootstrap, name: str) -> ParamikoChild:
        try:
            import paramiko
        except ImportError:
            raise ConnectError(name, "the paramiko backend needs paramiko: "
                               "pip install 'transport[fabric]' (or paramiko)") from None
        _quiet_unless_logging_is_set_up()
        options = self.client_options()
        client = paramiko.SSHClient()
        keys = [os.path.expanduser(key) for key in self.identity_files
                or ([options["IdentityFile"]] if "IdentityFile" in options else [])]
        try:
            alive_interval = float(options.get("ServerAliveInterval", 0))
            alive_count = int(options.get("ServerAliveCountMax", 3))
        except ValueError:
            raise ValueError("ssh_options ServerAliveInterval and ServerAliveCountMax must be "
                             "numbers") from None
        try:
            timeout = float(options.get("ConnectTimeout", self.connect_timeout))
            port = int(self.port or options.get("Port", 22))
        except ValueError:
            raise ValueError("ssh_options ConnectTimeout and Port must be numbers") from None
        user = self.user or options.get("User") or getpass.getuser()
        known_types = _check_host_keys(client, options, self.host, port, name)
        try:
            if self._abandoned:
                raise ConnectError(name, "abandoned: its router closed")
            sock = self._socket = _open_socket(self.host, port, timeout)
            client.connect(self.host, port=port, username=user, password=self._password,
                           passphrase=self._passphrase,
                           key_filename=keys or None,
                           # As OpenSSH: default key files only when none is given; the
                           # agent unless IdentityAgent=none, or IdentitiesOnly=yes (which
                           # limits it to the keys given: paramiko cannot filter the agent).
                           look_for_keys=not keys,
                           allow_agent=(options.get("IdentityAgent") != "none"
                                        and options.get("IdentitiesOnly") != "yes"),
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           compress=options.get("Compression") == "yes",
                           sock=sock, transport_factory=_preferring(known_types))
            channel = client.get_transport().open_session(timeout=timeout)
            # paramiko waits for the answer to the command request without a deadline.
            fired = threading.Event()

            def give_up() -> None:
                fired.set()
                _hang_up(client)

            watchdog = threading.Timer(timeout, give_up)
            watchdog.daemon = True
            watchdog.start()
            try:
                channel.exec_command(bootstrap.shell_command(self.python, self.search_path))
            except (paramiko.SSHException, EOFError, OSError):
                if fired.is_set():
                    raise ConnectError(name, f"ssh to {self.host}: no answer to the command "
                                             f"request within {timeout:g}s") from None
                raise
            finally:
                watchdog.cancel()
        except paramiko.BadHostKeyException as e:
            client.close()
            raise host_key_changed(name, f"{e.key.get_name()} key {_fingerprint(e.key)}, "
                                         f"known as {_fingerprint(e.expected_key)}") from None
        except paramiko.AuthenticationException as e:
            client.close()
            raise AuthError(name, f"authentication refused: Permission denied ({e})") from None
        except socket.gaierror as e:
            client.close()
            raise ConnectError(name, f"Could not resolve hostname {self.host}: {e.strerror}") from None
        except (socket.timeout, TimeoutError):
            client.close()
            raise ConnectError(name, f"connect to host {self.host} port {port}: "
                               "Connection timed out") from None
        except OSError as e:
            client.close()
            if e.filename is not None:  # a key file that is missing or unreadable
                raise ConnectError(name, f"identity file {e.filename}: {e.strerror}") from None
            # paramiko wraps per-address failures (Connection refused ...) in .errors.
            cause = next(iter(getattr(e, "errors", {}).values()), e)
            raise ConnectError(name, f"connect to host {self.host} port {port}: "
                               f"{cause.strerror or cause}") from None
        except paramiko.SSHException as e:
            client.close()
            text = str(e)
            if self._passphrase is not None and ("Invalid key" in text or "private key" in text):
                raise AuthError(name, "authentication refused: the passphrase does not open the "
                                f"key ({text})") from None
            if "not found in known_hosts" in text:  # RejectPolicy's refusal
                raise host_key_unknown(name, f"{text}.") from None
            if "banner" in text.lower() or "no existing session" in text.lower():
                # paramiko says so whether the server hung up or said nothing in time.
                ended = isinstance(e.__context__, (EOFError, ConnectionError))
                text = f"connect to host {self.host} port {port}: " + (
                    "Connection closed by remote host" if ended else "timed out waiting for its SSH banner")
            raise ConnectError(name, f"ssh failed: {text}") from None
        except BaseException:  # interrupted (Ctrl-C) while connecting: leave nothing open
            client.close()
            raise
        # Watched from here on: until now each step had a deadline of its own.
        keep_alive = (KeepAlive(client, alive_interval, alive_count, self.host)
                      if alive_interval > 0 else None)
        return ParamikoChild(client, channel, keep_alive)


# StrictHostKeyChecking's values, as ssh reads them (in any case); ask is yes: none prompts.
STRICT_VALUES = {"yes": "yes", "true": "yes", "ask": "yes", "accept-new": "accept-new",
                 "no": "no", "off": "no", "false": "no"}


def _check_host_keys(client: Any, options: dict[str, str], host: str, port: int,
                     name: str) -> list[str]:
    """Set client up to check the host's key as StrictHostKeyChecking and UserKnownHostsFile
    say; return the types of the keys known for it, in file order. Without a file of
    its own, keys come from ~/.ssh/known_hosts and one accepted under accept-new is kept
    for the connection only (as stock Fabric's); files given (separated by spaces, as
    for ssh; `none` is none) are read in order and the first gets it appended, as
    OpenSSH does; one that does not exist yet knows no host."""
    import paramiko

    from transport.methods import paramiko_known_hosts as known_hosts

    value = options.get("StrictHostKeyChecking", "yes")
    policy = STRICT_VALUES.get(value.lower())
    if policy is None:
        raise ValueError(f"ssh_options StrictHostKeyChecking must be one of yes, accept-new, "
                         f"no, off or ask, not {value!r}")
    if policy == "no":
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        return []
    given = options.get("UserKnownHostsFile")
    if given is not None and not given.split():
        raise ValueError("ssh_options UserKnownHostsFile is empty")
    if given is not None and ("%" in given or "${" in given):
        raise ValueError(f"ssh_options UserKnownHostsFile {given!r}: the paramiko backend "
                         "does not expand ssh's %-tokens and ${...}: give the path itself, "
                         "or use backend='openssh'")
    paths = [os.path.expanduser(path) for path in (given or "~/.ssh/known_hosts").split()
             if path.lower() not in ("none", "/dev/null")]
    try:
        known_types = known_hosts.give_known_keys(client, paths,
                                                  known_hosts.lookup_name(host, port))
    except OSError as e:
        if not given:
            known_types = []
        else:
            raise ConnectError(name, f"cannot read the known hosts file {e.filename}: "
                                     f"{e.strerror}") from None
    client.set_missing_host_key_policy(
        known_hosts.AppendNewKeys(paths[0] if given and paths else None)
        if policy == "accept-new" else paramiko.RejectPolicy())
    return known_types


def _preferring(known_types: list[str]) -> Callable[..., Any]:
    """A paramiko Transport factory that asks for the host key types known for the host
    before the others. (paramiko itself moves only the first known type forward: where
    the server no longer had that one, it chose a type not known, and a good host
    looked changed.)"""
    import paramiko

    wanted = [name for known in known_types
              for name in (("rsa-sha2-512", "rsa-sha2-256") if known == "ssh-rsa" else (known,))]

    def factory(*args: Any, **kwargs: Any) -> Any:
        transport = paramiko.Transport(*args, **kwargs)
        options = transport.get_security_options()
        first = [name for name in wanted if name in options.key_types]
        options.key_types = first + [name for name in options.key_types if name not in first]
        return transport

    return factory
