"""TransportRunner: invoke's Runner with the command running on a transport context.

invoke's Runner keeps doing what users know (echo, hide, warn, encoding,
out_stream/err_stream, Result, UnexpectedExit, CommandTimedOut); only the
process side changes. start() hands the command to Context.run on a worker
thread, whose output callback feeds one queue per stream; invoke's own
reader threads drain those queues, so output shows up as the command
produces it. wait() blocks on an event instead of invoke's 10 ms polling.

What a remote command cannot have: a live stdin. An explicit in_stream is
read to its end and fed to the command as input; otherwise the command's
stdin is empty. Watchers (answering prompts) need a live stdin and are
refused with a clear error, but for the one invoke's c.sudo adds: its
command then runs in a persistent sudo interpreter on the target, which
sudo gave the password (sudo.password, or c.sudo's password=) once, as
Fabric's Connection.sudo does; a refused password raises invoke's
AuthFailure, as stock invoke does. Ctrl-C stops the task at once and sends
the running command SIGINT, as Ctrl-C at a terminal would.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
from typing import Any

from invoke import Runner
from invoke.exceptions import AuthFailure
from invoke.runners import Result
from invoke.watchers import FailingResponder

import transport

# What the watcher invoke's Context.sudo adds waits for after a refused password.
SUDO_RETRY = "Sorry, try again.\n"


def invoke_sudo(context: Any, command: str, watchers: list[Any]) -> tuple[str, str | None, str] | None:
    """(user, password, command) when command and the last watcher are what invoke's
    Context.sudo makes of c.sudo(command): `sudo -S -p '<prompt>' [--preserve-env='...']
    [-H -u user] <command>` and a FailingResponder that answers the prompt; None otherwise."""
    head = f"sudo -S -p '{context.config.sudo.prompt}' "
    if not command.startswith(head) or not watchers:
        return None
    responder = watchers[-1]  # invoke appends its own to any the caller gave
    if not isinstance(responder, FailingResponder) or responder.sentinel != SUDO_RETRY:
        return None
    rest = command[len(head):]
    if rest.startswith("--preserve-env='"):  # the env itself travels with the command
        rest = rest[rest.index("' ", len("--preserve-env='")) + 2:]
    user = "root"
    if rest.startswith("-H -u "):
        user, _, rest = rest[len("-H -u "):].partition(" ")
    password: str | None = responder.response[:-1]  # "<password>\n"
    if password == "None" and context.config.sudo.password is None:
        password = None  # none was configured: sudo must not need one (sudo -n)
    return user, password, rest


class TransportRunner(Runner):
    """Run commands on a transport context: the one set in .target, or the one config names.

    Config (invoke): ``transport.host`` is "local" (default: a child interpreter on
    this machine) or "[user@]host[:port]" reached over ssh; ``transport.python``,
    ``transport.identity_file``, ``transport.backend`` as for Router.ssh.
    """

    # A command past its timeout: its process group was sent SIGKILL (invoke's own -9).
    TIMED_OUT_EXIT = -9

    def __init__(self, context: Any, inline_env: bool | None = None) -> None:
        super().__init__(context)
        self._replace_env = False
        # Fabric's Connection passes inline_env; env travels as data, never inlined.
        self.inline_env = inline_env
        self.target: transport.Context | None = None
        self._chunks: dict[str, queue.SimpleQueue] = {"stdout": queue.SimpleQueue(),
                                                      "stderr": queue.SimpleQueue()}
        self._finished = threading.Event()
        self._exit_code: int | None = None
        self._error: BaseException | None = None
        self._timed_out = False

    # -- choosing where and how the command runs --------------------------------

    def resolve_target(self) -> transport.Context:
        """The context to run on when none was set: from the invoke config's `transport` section."""
        from adapters.targets import shared_targets

        settings = dict(self.context.config.get("transport") or {})
        spec = settings.pop("host", None) or "local"
        python = settings.pop("python", None)
        return shared_targets().for_spec(spec, python, **settings)

    def shell_argv(self, shell: str, command: str) -> list[str]:
        """The argv that runs command: invoke's configured shell (run.shell)."""
        return [shell, "-c", command]

    def generate_env(self, env: dict[str, Any], replace_env: bool) -> dict[str, Any]:
        # Only what the caller set travels: the target keeps its own environment (the
        # controller's is not copied to another machine), as Fabric does; replace_env
        # makes env the command's whole environment, as invoke's does.
        self._replace_env = replace_env
        return dict(env)

    def create_io_threads(self) -> Any:
        threads, stdout, stderr = super().create_io_threads()
        threads.pop(self.handle_stdin, None)  # stdin is fed up front (see the module doc)
        return threads, stdout, stderr

    # -- the Runner interface ---------------------------------------------------

    def start(self, command: str, shell: str, env: dict[str, Any]) -> None:
        sudo = self._sudo_request(command)
        target = self.target if self.target is not None else self.resolve_target()
        if sudo is not None:
            user, password, command = sudo
            target = self._sudo_target(target, user, password, command)
            self.watchers = []  # sudo got its password already: nothing is answered on stdin
        self.target = target
        data = self._input()
        argv = self.shell_argv(shell, command)
        timeout = self.opts["timeout"]
        worker = threading.Thread(target=self._work, args=(target, argv, env, data, timeout),
                                  name=f"transport-run {target.name}", daemon=True)
        worker.start()

    def _sudo_request(self, command: str) -> tuple[str, str | None, str] | None:
        """invoke_sudo()'s reading of c.sudo, None without watchers; other watchers are refused."""
        if not self.watchers:
            return None
        sudo = invoke_sudo(self.context, command, self.watchers)
        if sudo is None or len(self.watchers) > 1:
            raise ValueError("transport: watchers (answering prompts) need a live stdin, "
                             "which commands run over the transport do not have; pass the "
                             "answers as in_stream (c.sudo alone is supported; here "
                             f"watchers {self.watchers[:-1] if sudo else self.watchers!r} "
                             "came from run.watchers or watchers=)")
        return sudo

    def _sudo_target(self, via: transport.Context, user: str, password: str | None,
                     command: str) -> transport.Context:
        """A persistent sudo interpreter as user on via's host (one per host and user)."""
        from adapters.targets import shared_targets

        try:
            return shared_targets().sudo(via, user, password)
        except transport.AuthError as e:
            result = Result(command=command, exited=-1, stderr=str(e), hide=("stdout", "stderr"))
            raise AuthFailure(result, self.context.config.sudo.prompt) from e

    def _input(self) -> bytes | None:
        stream = self.opts["in_stream"]
        if stream is None or stream is False or stream is sys.stdin:
            return None
        data = stream.read()
        return data.encode(self.encoding) if isinstance(data, str) else data

    def _work(self, target: transport.Context, argv: list[str], env: dict[str, Any],
              data: bytes | None, timeout: float | None) -> None:
        try:
            result = target.run(argv, env=env or None, input=data, timeout=timeout,
                                pty=self.using_pty, on_output=self._on_output,
                                replace_env=self._replace_env)
            self._exit_code = result.exit_code
        except transport.Timeout:
            self._timed_out = True
            self._exit_code = self.TIMED_OUT_EXIT
        except BaseException as e:  # handed to the caller's thread by wait()
            self._error = e
        finally:
            for chunks in self._chunks.values():
                chunks.put(b"")
            self._finished.set()

    def _on_output(self, stream: str, chunk: bytes) -> None:
        if chunk:
            self._chunks[stream].put(chunk)

    def start_timer(self, timeout: Any) -> None:
        pass  # the target kills the command's process group at the deadline

    @property
    def timed_out(self) -> bool:
        return self._timed_out

    def wait(self) -> None:
        while not self._finished.wait(0.5):
            if self.has_dead_threads:
                return
        if self._error is not None:
            raise self._error

    @property
    def process_is_finished(self) -> bool:
        return self._finished.is_set()

    def read_proc_stdout(self, num_bytes: int) -> bytes:
        return self._chunks["stdout"].get()

    def read_proc_stderr(self, num_bytes: int) -> bytes:
        return self._chunks["stderr"].get()

    def _write_proc_stdin(self, data: bytes) -> None:
        raise ValueError("transport: a running command has no live stdin (see TransportRunner)")

    def close_proc_stdin(self) -> None:
        pass

    def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
        if self.target is not None:
            try:
                self.target.signal_commands(signal.SIGINT)
            except transport.TransportError:
                pass  # the connection is gone, and the command with it
        # Stop at once: invoke joins its output threads before the interrupt surfaces,
        # and they would otherwise wait for the command's end (never, for tail -f).
        for chunks in self._chunks.values():
            chunks.put(b"")
        raise interrupt

    def returncode(self) -> int | None:
        return self._exit_code

    def kill(self) -> None:
        pass  # only invoke's own timer calls this, and start_timer sets none
