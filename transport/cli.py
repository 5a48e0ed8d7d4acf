"""The command-line tool: `python -m transport` (installed as `transport`).

    transport [-H HOSTS | -i INVENTORY] [-u USER] [-k] [--sudo | -K] [-U USER]
              [--python PATH[,PATH...]] [--json] [-j N] run -- CMD ...
    transport ... call module:function [ARG ...]     # args parsed as JSON, else strings
    transport ... ping
    transport ... put SRC DST  /  get SRC DST

With no host it targets this machine. HOSTS are comma-separated
[user@]host[:port]; an INVENTORY file has one host per line (# comments). With
one target, run behaves as ssh host cmd does: our stdin goes to the command,
its stdout and stderr come back apart as it writes them, and its exit status
is ours; call prints what the function returned. With several hosts a
progress bar runs on stderr (when it is a terminal), then a table shows each
host's status, exit code, time and first line of output or error; --json
prints one document instead (and the command gets no input). Otherwise the
exit status is 1 when any host failed. -v logs connections, the
targets' stderr and their log records with host names. Ctrl-C interrupts
the commands running on every host and ends with status 130. --sudo becomes
root (-U another user); sudo's password, where one is needed, is asked once on the terminal
(-K) or taken from $TRANSPORT_SUDO_PASSWORD. Hosts that take a login password
rather than a key get it the same way: -k, or $TRANSPORT_SSH_PASSWORD.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import sys
import threading

import transport
from transport.errors import shown
from transport.group import Group, GroupResult, HostResult, local_path_for, login_name, parse_host

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn

LOCAL = "localhost"
# Where a run without a terminal finds sudo's password (as invoke's INVOKE_SUDO_PASSWORD).
SUDO_PASSWORD_VARIABLE = "TRANSPORT_SUDO_PASSWORD"
SSH_PASSWORD_VARIABLE = "TRANSPORT_SSH_PASSWORD"
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C
BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output went away
SSH_FAILED = 255  # ssh's status when it cannot run the command at all
# A command that could not be started, with a shell's status for it.
NOT_STARTED = {"FileNotFoundError": 127, "PermissionError": 126, "NotADirectoryError": 126,
               "IsADirectoryError": 126}
# What a Python 2.7 target raises instead: an OSError, told apart by its errno.
NOT_STARTED_ERRNO = {errno.ENOENT: 127, errno.EACCES: 126, errno.ENOTDIR: 126, errno.EISDIR: 126}
OUTPUT_WIDTH = 100  # of a first line of output in the table


def _not_started_status(error: BaseException) -> int | None:
    """A shell's status for a command that could not start (127 not found, 126 not
    runnable), if error says so."""
    if not isinstance(error, transport.RemoteError):
        return None
    if error.remote_type in NOT_STARTED:
        return NOT_STARTED[error.remote_type]
    message = error.remote_message
    if error.remote_type == "OSError" and message.startswith("[Errno "):
        number = message[len("[Errno "):].partition("]")[0]
        return NOT_STARTED_ERRNO.get(int(number)) if number.isdigit() else None
    return None


def _parse_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _resolve(spec: str) -> Any:
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise SystemExit(f"transport: expected module:function, got {spec!r}")
    try:
        obj: Any = _import_here(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"transport: cannot find {spec}: {e}") from None
    return obj


def _import_here(module_name: str) -> Any:
    """The module, from sys.path or else from the current directory (as `python -m
    transport` would find it: `transport call tasks:deploy` beside ./tasks.py). The
    directory comes last, so it never hides an installed module."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        here = os.getcwd()
        if e.name != module_name.partition(".")[0] or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)
        return importlib.import_module(module_name)


def _jsonable(value: Any, strict: bool = False) -> Any:
    """value as JSON can show it; strict: NaN and infinities as text (a JSON document
    cannot hold them)."""
    if strict and isinstance(value, float) and (value != value or abs(value) == float("inf")):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v, strict) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, strict) for k, v in value.items()}
    return value


def _interpreters(text: str) -> str | list[str]:
    """An argparse type: an interpreter, or a comma-separated list of candidates."""
    if "," not in text:
        return text
    candidates = [part.strip() for part in text.split(",")]
    if not all(candidates):
        raise argparse.ArgumentTypeError(f"an empty interpreter in {text!r}")
    return candidates


def _positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a number of that kind above zero."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above zero, not {text}")
        return value

    return parse


def _sudo_user(text: str) -> str:
    """A user name sudo can be given (refused now, before any host is reached)."""
    from transport.methods.sudo import SudoMethod

    try:
        SudoMethod(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transport", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-H", "--hosts", help="comma-separated [user@]host[:port]")
    where.add_argument("-i", "--inventory", help="file with one host per line")
    parser.add_argument("-u", "--user", help="ssh user for hosts that name none")
    parser.add_argument("-o", dest="ssh_options", action="append", default=[], metavar="KEY=VALUE",
                        help="an ssh client option, as for ssh -o (repeatable)")
    parser.add_argument("--backend", choices=("openssh", "paramiko"), default="openssh",
                        help="ssh client: OpenSSH (default) or in-process paramiko for many hosts")
    parser.add_argument("--sudo", action="store_true",
                        help=f"become root with sudo (its password, where one is needed: -K, "
                        f"or ${SUDO_PASSWORD_VARIABLE})")
    parser.add_argument("-K", "--ask-sudo-password", action="store_true",
                        help="become root with sudo, asking its password once, on the terminal")
    parser.add_argument("-U", "--sudo-user", metavar="USER", type=_sudo_user,
                        help="the user sudo becomes, instead of root (implies --sudo)")
    parser.add_argument("-k", "--ask-ssh-password", action="store_true",
                        help="ask once, on the terminal, for the password of hosts that take "
                        f"one to log in (else: ${SSH_PASSWORD_VARIABLE})")
    parser.add_argument("--python", type=_interpreters,
                        help="target interpreter, or candidates as python3.12,python3 (the "
                        "first found runs; default: python3; locally this one)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("-j", "--jobs", type=_positive(int), default=32,
                        help="hosts at once (default 32)")
    parser.add_argument("--timeout", type=_positive(float), default=30.0,
                        help="connect timeout, seconds")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections and stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ping", help="start the interpreter and report it")
    run = commands.add_parser("run", help="run a command after --: one argument runs under "
                              "/bin/sh -c, several run directly")
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    call = commands.add_parser("call", help="run module:function [ARG ...]")
    call.add_argument("function", help="module:function; the module may be a file in the "
                      "current directory")
    call.add_argument("args", nargs="*", default=[], help="arguments, as JSON where they parse")
    put = commands.add_parser("put", help="copy a local file to the hosts")
    put.add_argument("src")
    put.add_argument("dst")
    get = commands.add_parser("get", help="copy a file from the hosts (DST may use {host})")
    get.add_argument("src")
    get.add_argument("dst")
    return parser


def _ssh_settings(pairs: list[str]) -> dict[str, Any]:
    """-o values as Router.ssh keywords, read as ssh reads them: KEY=VALUE or KEY VALUE, a
    key's first value wins (keys in any case), and each IdentityFile is one more key
    file to try (identity_file=)."""
    import re

    options: dict[str, str] = {}
    keys: list[str] = []
    for pair in pairs:
        match = re.fullmatch(r"\s*(\w+)\s*(?:=|\s)\s*(.+?)\s*", pair)
        if match is None:
            raise SystemExit(f"transport: -o takes KEY=VALUE, got {pair!r}")
        key, value = match.groups()
        if key.lower() == "identityfile":
            keys.append(value)
        elif key.lower() not in (known.lower() for known in options):
            options[key] = value
    return {"ssh_options": options, "identity_file": keys or None}


def _hosts(options: argparse.Namespace) -> list[str]:
    """The hosts named, each checked: a bad one ends the run before anything starts."""
    if options.inventory:
        try:
            with open(options.inventory, encoding="utf-8") as f:
                lines = [line.split("#", 1)[0].strip() for line in f]
        except (OSError, ValueError) as e:
            raise SystemExit(f"transport: cannot read the inventory {options.inventory}: "
                             f"{getattr(e, 'strerror', None) or e}") from None
        where = [(f"{options.inventory} line {number}", line)
                 for number, line in enumerate(lines, 1) if line]
    elif options.hosts:
        where = [("-H", h.strip()) for h in options.hosts.split(",") if h.strip()]
    else:
        return []
    for place, host in where:
        try:
            parse_host(host)
        except ValueError as e:
            raise SystemExit(f"transport: {place}: {e}") from None
    return list(dict.fromkeys(host for _, host in where))  # a host named twice runs once


def _task(options: argparse.Namespace, several: bool) -> Callable[[transport.Context], Any]:
    task = _command_task(options, several)
    if not options.verbose:
        return task

    def verbose(ctx: transport.Context) -> Any:
        ctx.forward_logging()
        return task(ctx)

    return verbose


class _Pinged(dict):
    """What ping says of a host (the table shows it as a line of its own)."""


def _command_task(options: argparse.Namespace, several: bool) -> Callable[[transport.Context], Any]:
    if options.command == "ping":
        return lambda ctx: _Pinged(python=ctx.python, version=ctx.python_version, pid=ctx.pid)
    if options.command == "run":
        cmd = options.cmd[1:] if options.cmd[:1] == ["--"] else options.cmd
        if not cmd:
            raise SystemExit("transport: run needs a command after --")
        command = cmd[0] if len(cmd) == 1 else cmd
        if not several and not options.json:
            return lambda ctx: _run_attached(ctx, command)
        return lambda ctx: ctx.run(command)
    if options.command == "call":
        fn = _resolve(options.function)
        args = [_parse_arg(a) for a in options.args]
        return lambda ctx: ctx.call(fn, *args)
    if options.command == "put":
        return lambda ctx: ctx.put(options.src, options.dst)
    if "{host}" not in options.dst and several:
        raise SystemExit('transport: with several hosts, get needs "{host}" in DST')
    # {host} is the host as given, also when the task runs in a sudo context on its login.
    return lambda ctx: ctx.get(options.src, local_path_for(options.dst,
                                                           login_name(ctx, options.sudo)))


def _run_attached(ctx: transport.Context, command: str | list[str]) -> transport.CommandResult:
    """Run command with our stdin, stdout and stderr, as ssh host cmd does: the input is
    copied as it comes (closed at its end), the output written as it arrives."""
    outputs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}

    def write_through(stream: str, chunk: bytes) -> None:
        outputs[stream].write(chunk)
        outputs[stream].flush()

    running = ctx.start(command, on_output=write_through)
    threading.Thread(target=_copy_stdin, args=(running,), name="transport-stdin",
                     daemon=True).start()  # it may wait on a terminal after the command's end
    return running.wait()


def _copy_stdin(running: Any) -> None:
    try:
        while True:
            data = os.read(sys.stdin.fileno(), 64 * 1024)
            if not data:
                break
            running.write(data)
    except (OSError, ValueError):
        return  # no usable stdin, or the command has ended (BrokenPipeError)
    running.close_input()


def _run_local(router: transport.Router, options: argparse.Namespace,
               task: Callable[[transport.Context], Any]) -> GroupResult:
    import time

    started = time.monotonic()
    try:
        ctx = router.local(python=options.python, connect_timeout=options.timeout, name=LOCAL)
        if options.sudo:
            ctx = router.sudo(via=ctx, user=options.sudo_user or "root", python=ctx.python,
                              password=options.sudo_password, connect_timeout=options.timeout)
        result = HostResult(LOCAL, task(ctx), seconds=time.monotonic() - started)
    except (transport.TransportError, OSError, ValueError, TypeError) as e:
        result = HostResult(LOCAL, error=e, seconds=time.monotonic() - started)
    return GroupResult([(LOCAL, result)])


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.enabled = total > 1 and sys.stderr.isatty()
        self._lock = threading.Lock()

    def __call__(self, result: HostResult) -> None:
        with self._lock:
            self.done += 1
            self.failed += not result.ok
            if self.enabled:
                width = 30
                filled = width * self.done // self.total
                sys.stderr.write(f"\r[{'#' * filled}{' ' * (width - filled)}] "
                                 f"{self.done}/{self.total} ({self.failed} failed)")
                sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _summary(host: str, result: HostResult) -> tuple[str, str, str]:
    """(status, exit code, first line of output, or the error) for the table."""
    if result.error is not None:
        text = [line.strip() for line in str(result.error).strip().splitlines() if line.strip()]
        first = text[0] if text else type(result.error).__name__
        if len(text) > 1 and first.endswith(":"):  # the cause is on the next line
            first = f"{first} {text[1]}"
        name = getattr(result.error, "host", None) or host
        if first.startswith(f"{name}:"):  # the HOST column says the host
            first = first[len(name) + 1:].strip()
            if name.startswith(host + "/"):  # what the login became: "sudo:root"
                first = f"{name[len(host) + 1:]}: {first}"
        hint = getattr(result.error, "hint", "") or _advice(result.error)
        return "error", "", f"{first} ({hint})" if hint else first  # what to do, in the row
    value = result.value
    if isinstance(value, transport.CommandResult):
        output = (value.stdout or value.stderr).decode("utf-8", "replace").strip().splitlines()
        return ("ok" if value.ok else "failed"), str(value.exit_code), output[0] if output else ""
    if isinstance(value, _Pinged):
        return "ok", "", f"Python {value['version']} at {value['python']}"
    text = value if isinstance(value, str) else json.dumps(_jsonable(value))
    return "ok", "", text.splitlines()[0] if text else ""


def _advice(error: BaseException) -> str:
    """What to do about a failure the CLI's options can fix, or ""."""
    if isinstance(error, transport.AuthError) and "(no password was given)" in str(error):
        return f"-K asks for sudo's password; or set {SUDO_PASSWORD_VARIABLE}"
    return ""


def _table(results: GroupResult) -> str:
    rows = [("HOST", "STATUS", "EXIT", "TIME", "OUTPUT")]
    for host, result in results.items():
        status, code, first = _summary(host, result)
        first = shown(first)  # what a host wrote: it must not move the cursor over other rows
        if result.error is None and len(first) > OUTPUT_WIDTH:
            first = first[:OUTPUT_WIDTH - 3] + "..."
        rows.append((host, status, code, f"{result.seconds:.2f}s", first))  # an error whole
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(widths[i]) if i < 4 else cell
                               for i, cell in enumerate(row)).rstrip() for row in rows)


def _document(results: GroupResult) -> dict[str, Any]:
    hosts: dict[str, Any] = {}
    for host, result in results.items():
        entry: dict[str, Any] = {"ok": result.ok, "seconds": round(result.seconds, 4)}
        if result.error is not None:
            entry["error"] = str(result.error)
            entry["error_type"] = type(result.error).__name__
        elif isinstance(result.value, transport.CommandResult):
            entry.update(exit_code=result.value.exit_code, stdout=result.value.text(),
                         stderr=result.value.text("stderr"))
        else:
            entry["result"] = _jsonable(result.value, strict=True)
        hosts[host] = entry
    return {"ok": all(r.ok for r in results.values()), "hosts": hosts}


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    if options.verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG if os.environ.get("TRANSPORT_DEBUG") else logging.INFO,
                            format="%(name)s: %(message)s")
    hosts = _hosts(options)
    task = _task(options, len(hosts) > 1)
    try:
        options.sudo_password = _sudo_password(options)
        options.ssh_password = _asked_or_given(options.ask_ssh_password, SSH_PASSWORD_VARIABLE,
                                               "-k", "the hosts' login password", "ssh password")
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return INTERRUPTED
    try:
        with transport.Router() as router:
            try:
                results = _results(router, options, hosts, task)
            except KeyboardInterrupt:
                try:
                    _interrupt(router)
                except KeyboardInterrupt:  # again, while the first is passed on
                    _leave_now()
                return INTERRUPTED  # leaving the with closes the router: it hangs up on the rest
        return _report(options, results)
    except KeyboardInterrupt:  # again, while the router closes
        _leave_now()
    except BrokenPipeError:  # our stdout's reader is gone (| head): end quietly, as ssh does
        _quiet_stdout()
        return BROKEN_PIPE


def _leave_now() -> NoReturn:
    """A second Ctrl-C: exit at once. The targets see their connection end and hang up on
    their commands; the threads still waiting on them would hold up a normal exit."""
    sys.stdout.flush()
    os._exit(INTERRUPTED)


def _sudo_password(options: argparse.Namespace) -> str | None:
    """sudo's password: asked on the terminal (-K, which implies --sudo), else the
    environment's, else none (sudo then must not need one)."""
    if options.ask_sudo_password or options.sudo_user:
        options.sudo = True
    password = _asked_or_given(options.ask_sudo_password, SUDO_PASSWORD_VARIABLE, "-K",
                               "sudo's password", "sudo password")
    return password if options.sudo else None


def _asked_or_given(ask: bool, variable: str, option: str, what: str, prompt: str) -> str | None:
    """A password asked on the terminal (with `option`), else the environment's, else none."""
    # Taken out of the environment in any case: local targets and their commands inherit it.
    from_environment = os.environ.pop(variable, None)
    if not ask:
        return from_environment or None
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        sys.exit(f"transport: {option} asks for {what} on the terminal, and there is "
                 f"none: set {variable} instead")
    import getpass

    return getpass.getpass(f"{prompt}: ")


def _results(router: transport.Router, options: argparse.Namespace, hosts: list[str],
             task: Callable[[transport.Context], Any]) -> GroupResult:
    if not hosts:
        return _run_local(router, options, task)
    group = Group(router, hosts, user=options.user, python=options.python or "python3",
                  sudo=options.sudo, sudo_user=options.sudo_user or "root",
                  sudo_password=options.sudo_password,
                  concurrency=options.jobs, connect_timeout=options.timeout,
                  **_ssh_settings(options.ssh_options), backend=options.backend,
                  password=options.ssh_password)
    progress = Progress(len(hosts))
    group.on_result = progress
    try:
        return group.each(task)
    finally:
        progress.finish()


def _interrupt(router: transport.Router) -> None:
    """Ctrl-C: interrupt the commands running on every host, as it would a local one."""
    for ctx in router.contexts():
        try:
            ctx.signal_commands()
        except transport.TransportError:
            pass  # that connection is gone, and its commands with it


def _report(options: argparse.Namespace, results: GroupResult) -> int:
    """Print the results; return the exit status."""
    if options.json:
        print(json.dumps(_document(results), indent=2))
    elif len(results) == 1 and options.command in ("run", "call"):
        result = _only(results)
        if result.error is not None:
            if _our_output_closed(result.error):
                return BROKEN_PIPE
            error = result.error
            status = _not_started_status(error) if options.command == "run" else None
            if status is not None:  # a command given as its words
                print(f"transport: {error.host}: {error.remote_message}", file=sys.stderr)
                return status
            # On stderr, as ssh reports its own failures: stdout is the command's alone.
            advice = _advice(error)
            print(f"transport: {error}" + (f" ({advice})" if advice else ""), file=sys.stderr)
            return SSH_FAILED if options.command == "run" else 1
        value = result.value
        if options.command == "run":
            # Its output went out as it came; killed by signal N: 128 + N, as a shell says.
            return value.exit_code if value.exit_code >= 0 else 128 - value.exit_code
        print(value if isinstance(value, str) else json.dumps(_jsonable(value)))
    else:
        print(_table(results))
    return 0 if all(r.ok for r in results.values()) else 1


def _our_output_closed(error: BaseException | None) -> bool:
    """Whether error, or an error it came from, is a write to our closed stdout/stderr."""
    while error is not None:
        if isinstance(error, BrokenPipeError):
            return True
        error = error.__cause__ or error.__context__
    return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _only(results: GroupResult) -> HostResult:
    (result,) = results.values()
    return result


if __name__ == "__main__":
    sys.exit(main())
