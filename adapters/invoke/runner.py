"""TransportRunner: invoke's Runner with the command running on a transport context.

invoke's Runner keeps doing what users know (echo, hide, warn, encoding,
out_stream/err_stream, watchers, in_stream, Result, UnexpectedExit,
CommandTimedOut); only the process side changes. start() starts the command
with Context.start, and a worker thread waits for it, its output callback
feeding one queue per stream; invoke's own reader threads drain those
queues, so output shows up as the command produces it, and watchers answer
prompts on the command's live stdin. The stdin thread copies in_stream
(default: our stdin) there as it comes, keystrokes from a terminal one by
one, anything else in chunks (invoke reads a byte per 10 ms), and closes it
at the stream's end (not on a pty, as invoke). A pty has our terminal's size,
and follows it when it changes (SIGWINCH), as Fabric's does. wait(), and the stdin thread
between reads, block on events instead of invoke's 10 ms polling.

invoke's c.sudo adds a watcher that types the password at sudo's prompt;
instead, the command runs in a persistent sudo interpreter on the target,
which sudo gave the password (sudo.password, or c.sudo's password=) once,
as Fabric's Connection.sudo does (other watchers stay). Where sudo will not
start one (a rule for some commands only, requiretty, no password where one
is needed: Targets.sudo_if_allowed), the sudo command line runs as stock invoke runs
it, watcher included, so sudo allows and refuses what it would there; with no
password configured it runs with -n instead of typing "None" at the prompt. Ctrl-C stops the task at
once and sends the running command SIGINT, as Ctrl-C at a terminal would; on
a pty it is typed at the command's terminal, as invoke does, and the command
decides (an interactive shell goes on).
"""

from __future__ import annotations

import codecs
import errno
import queue
import signal
import threading
from typing import IO, Any

from invoke import Runner
from invoke.exceptions import Failure, ResponseNotAccepted
from invoke.runners import Result
from invoke.terminals import character_buffered, isatty, pty_size, ready_for_reading
from invoke.watchers import FailingResponder

import transport
from transport import log

# What the watcher invoke's Context.sudo adds waits for after a refused password.
SUDO_RETRY = "Sorry, try again.\n"
# How much of a stream that is not a terminal is read at a time for the command's stdin.
STDIN_CHUNK = 64 * 1024


def sudo_head(context: Any) -> str:
    """How invoke's Context.sudo starts its command line."""
    return f"sudo -S -p '{context.config.sudo.prompt}' "


def invoke_sudo(context: Any, command: str, watchers: list[Any]) -> tuple[str, str | None, str] | None:
    """(user, password, command) when command and the last watcher are what invoke's
    Context.sudo makes of c.sudo(command): `sudo -S -p '<prompt>' [--preserve-env='...']
    [-H -u user] <command>` and a FailingResponder that answers the prompt; None otherwise."""
    head = sudo_head(context)
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
    ``transport.identity_file``, ``transport.backend``, ``transport.password`` (and the
    other Router.ssh keywords) as for Router.ssh.
    """

    # A command past its timeout: its process group was sent SIGKILL (invoke's own -9).
    TIMED_OUT_EXIT = -9
    LOST_EXIT = -1

    def __init__(self, context: Any, inline_env: bool | None = None) -> None:
        super().__init__(context)
        self._replace_env = False
        self.inline_env = inline_env  # Fabric's Connection passes it (see place_env)
        self.target: transport.Context | None = None
        self._command: Any = None  # the RunningCommand
        self._previous_winch: Any = None  # SIGWINCH's handler before ours, while ours is on
        self._stdin_decoder: Any = None
        self._chunks: dict[str, queue.SimpleQueue] = {"stdout": queue.SimpleQueue(),
                                                      "stderr": queue.SimpleQueue()}
        self._finished = threading.Event()
        self._exit_code: int | None = None
        self._error: BaseException | None = None
        self._timed_out = False
        self._interrupted = False  # Ctrl-C was passed on: the command decides

    # -- choosing where and how the command runs --------------------------------

    def resolve_target(self) -> transport.Context:
        """The context to run on when none was set: from the invoke config's `transport` section."""
        from adapters.targets import shared_targets

        settings = dict(self.context.config.get("transport") or {})
        spec = settings.pop("host", None) or "local"
        python = settings.pop("python", None)
        return shared_targets().for_spec(spec, python, **settings)

    def shell_argv(self, shell: str, command: str) -> tuple[list[str], str | None]:
        """The argv that runs command, and the program it runs when argv[0] is only its
        name: invoke's configured shell (run.shell), as invoke runs it."""
        return [shell, "-c", command], None

    def terminal_env(self) -> dict[str, str]:
        """What a command on a pty adds to its environment (env= may override it):
        nothing, as invoke's own pty (of our terminal's size) adds nothing."""
        return {}

    def generate_env(self, env: dict[str, Any], replace_env: bool) -> dict[str, Any]:
        # Only what the caller set travels: the target keeps its own environment (the
        # controller's is not copied to another machine), as Fabric does; replace_env
        # makes env the command's whole environment, as invoke's does.
        self._replace_env = replace_env
        return dict(env)

    def place_env(self, command: str, env: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Where env goes: (the command line, the environment given as data). invoke
        gives it to the process as data."""
        return command, env

    # -- the Runner interface ---------------------------------------------------

    def start(self, command: str, shell: str, env: dict[str, Any]) -> None:
        sudo = self._sudo_request(command)
        target = self.target if self.target is not None else self.resolve_target()
        if sudo is not None:
            user, password, sudo_command = sudo
            as_user = self._sudo_target(target, user, password, sudo_command)
            if as_user is not None:  # else sudo runs the command line, as stock's
                target, command = as_user, sudo_command
                self.watchers = self.watchers[:-1]  # sudo has its password: no prompt to answer
            elif password is None:  # not typed as "None" (a failed login): sudo -n
                command = "sudo -n " + command[len(sudo_head(self.context)):]
                self.watchers = self.watchers[:-1]
        self.target = target
        command, env = self.place_env(command, env)
        terminal: dict[str, Any] = {}
        if self.using_pty:
            env = {**self.terminal_env(), **env}
            terminal = {"pty": True, "pty_size": pty_size()}
        argv, program = self.shell_argv(shell, command)
        self._command = target.start(argv, executable=program, env=env or None,
                                     timeout=self.opts["timeout"], on_output=self._on_output,
                                     replace_env=self._replace_env, **terminal)
        if self.using_pty and hasattr(signal, "SIGWINCH") and (
                threading.current_thread() is threading.main_thread()):
            self._previous_winch = signal.signal(signal.SIGWINCH, self._window_changed)
        worker = threading.Thread(target=self._work, name=f"transport-run {target.name}",
                                  daemon=True)
        worker.start()

    def _sudo_request(self, command: str | None) -> tuple[str, str | None, str] | None:
        """invoke_sudo()'s reading of c.sudo; None without watchers (or a command)."""
        if not self.watchers or command is None:
            return None
        return invoke_sudo(self.context, command, self.watchers)

    def _sudo_target(self, via: transport.Context, user: str, password: str | None,
                     command: str) -> transport.Context | None:
        """A persistent sudo interpreter as user on via's host (one per host and user), or
        None where sudo will not start one (Targets.sudo_if_allowed)."""
        from adapters.targets import shared_targets

        try:
            return shared_targets().sudo_if_allowed(via, user, password)
        except transport.AuthError as e:  # the password was refused
            # As stock's watcher refusal: invoke's sudo() turns it into its AuthFailure.
            result = Result(command=command, exited=-1, stderr=str(e), hide=("stdout", "stderr"))
            raise Failure(result, reason=ResponseNotAccepted(str(e))) from e

    def _work(self) -> None:
        try:
            self._exit_code = self._command.wait().exit_code
        except transport.Timeout:
            self._timed_out = True
            self._exit_code = self.TIMED_OUT_EXIT
        except transport.Disconnected as e:
            # The connection was lost mid-command: as stock Fabric's channel, which then
            # has no exit status, -1 (a Result with warn=True, else UnexpectedExit), and
            # the reason on stderr; not when the run closed it (a command disowned, or
            # never joined, still running at the end).
            if not (self.target is not None and self.target.router.closed):
                log.warning("transport", "%s", e)
            self._exit_code = self.LOST_EXIT
        except BaseException as e:  # handed to the caller's thread by wait()
            self._error = e
        finally:
            for chunks in self._chunks.values():
                chunks.put(b"")
            self._finished.set()

    def _on_output(self, stream: str, chunk: bytes) -> None:
        if chunk:
            self._chunks[stream].put(chunk)

    def _window_changed(self, signum: int, frame: Any) -> None:
        """SIGWINCH: our terminal's new size goes to the command's, as Fabric sends it."""
        try:
            self._command.resize(pty_size())
        except transport.TransportError:
            pass  # the connection is gone, and the command with it

    def stop(self) -> None:
        """After the run (invoke's finally): a command still running (a watcher's
        Failure) is hung up on, as stock Fabric's closed channel does; after Ctrl-C, which
        it was given, it decides (it may be a shell that goes on) until the run ends."""
        super().stop()
        if self._command is not None and not self._finished.is_set() and not self._interrupted:
            try:
                self._command.hang_up()
            except transport.TransportError:
                pass  # the connection is gone, and the command with it
        if self._previous_winch is not None:
            signal.signal(signal.SIGWINCH, self._previous_winch)
            self._previous_winch = None

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

    def handle_stdin(self, input_: IO, output: IO, echo: bool | None = False) -> None:
        """invoke's stdin thread: copy input_ to the command's stdin (echoing it where
        invoke would) until the command ends, closing that at input_'s end (not on a
        pty). Between reads it waits on the command's end rather than sleeping, so
        a short command is not held up to input_sleep by this thread."""
        with character_buffered(input_):
            while not self.program_finished.is_set():
                data = self.read_our_stdin(input_)
                if data is None:  # nothing yet
                    self.program_finished.wait(self.input_sleep)
                elif not data:  # the end of input_
                    if not self.using_pty:
                        self.close_proc_stdin()
                    return
                else:
                    self.write_proc_stdin(data)
                    if echo is None:
                        echo = self.should_echo_stdin(input_, output)
                    if echo:
                        self.write_our_output(stream=output, string=data)

    def read_our_stdin(self, input_: IO) -> str | None:
        """What the stream has for the command's stdin (None: nothing yet, "": its end):
        from a terminal, as invoke reads keystrokes; from anything else, up to
        STDIN_CHUNK bytes that are there, decoded as a whole stream (a character
        split between two reads is kept whole)."""
        if isatty(input_):
            return super().read_our_stdin(input_)
        if not ready_for_reading(input_):
            return None
        source = getattr(input_, "buffer", input_)  # under a text stream, its bytes
        read = getattr(source, "read1", None) or source.read
        try:
            data = read(STDIN_CHUNK)
        except OSError as e:
            if e.errno is None:  # a stream that refuses reads (pytest's stdin): no input
                return ""
            if e.errno != errno.EBADF:  # as invoke: no usable stdin (nohup)
                raise
            return None
        if not isinstance(data, bytes):
            return data
        if self._stdin_decoder is None:
            self._stdin_decoder = codecs.getincrementaldecoder(self.encoding)("replace")
        text = self._stdin_decoder.decode(data, final=not data)
        return None if data and not text else text  # "" would say the stream has ended

    def _write_proc_stdin(self, data: bytes) -> None:
        try:
            self._command.write(data)
        except BrokenPipeError:
            pass  # the command has ended (invoke's own runner ignores a broken pipe too)

    def close_proc_stdin(self) -> None:
        self._command.close_input()

    def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
        self._interrupted = True
        if self.using_pty and self._command is not None:
            # Typed at its terminal, as invoke does: the terminal interrupts whatever runs
            # in its foreground (a shell's job, or the shell itself), which decides.
            self.write_proc_stdin("\x03")
            return
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
