"""Watching processes from the tests: whether one still runs, waiting for it to end,
and running a Python program that must end in time (or show where it stuck)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


def run_python_program(argv: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run(argv, capture_output=True, text=True, timeout=timeout) for a Python
    program (the tests' `fab` runs). One that has not ended by then is sent SIGABRT, on
    which faulthandler prints every thread's stack, and the test fails with that and
    what it printed: a hang seen once in CI says where it was."""
    env = dict(kwargs.pop("env", None) or os.environ, PYTHONFAULTHANDLER="1")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, **kwargs)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        try:
            out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        raise AssertionError(f"{argv} did not end within {timeout}s.\nIts output:\n{out}\n"
                             f"Its stderr, ending with its threads' stacks:\n{err}") from None
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def alive(pid: int) -> bool:
    """Whether pid is a running process (a zombie nobody has reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(") ")[2][:1]
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
        return False
    return state not in ("Z", "X")


def children(pid: int) -> dict[int, str]:
    """pid's child processes: pid -> state (Z for a zombie nobody has reaped yet)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                state, parent = f.read().rpartition(") ")[2].split()[:2]
        except (OSError, ValueError):  # gone before, or while, it was read
            continue
        if int(parent) == pid:
            found[int(entry)] = state
    return found


def running_children(pid: int) -> set[int]:
    """pid's child processes that have not ended (zombies left out)."""
    return {child for child, state in children(pid).items() if state != "Z"}


def written_text(path: Path, limit: float = 60.0) -> str:
    """The text a command writes into path, once there is some (a hang stopper at limit:
    then whatever is there, which the caller's assertion reports)."""
    deadline = time.monotonic() + limit
    while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)  # a shell creates the file before it writes to it
    return path.read_text() if path.exists() else ""


def wait_gone(pid: int, limit: float = 30.0) -> bool:
    """Wait until pid is gone; False if it still runs after limit seconds (a hang stopper)."""
    deadline = time.monotonic() + limit
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def answer_on_a_terminal(argv: list[str], prompt: bytes, answer: str, timeout: float = 60,
                         **kwargs: Any) -> tuple[int, bytes, bytes, bytes]:
    """Run argv with a new pty as its controlling terminal (as a shell gives a command
    its terminal; stdin is /dev/null), type answer there once prompt shows, and return
    its status, stdout, stderr and all the terminal showed."""
    import fcntl
    import select
    import termios

    master, slave = os.openpty()

    def take_the_terminal() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=take_the_terminal,
                               pass_fds=(slave,), **kwargs)
    os.close(slave)
    try:
        shown = b""
        while prompt not in shown:
            assert select.select([master], [], [], timeout)[0], f"no prompt: {shown!r}"
            shown += os.read(master, 1024)
        os.write(master, answer.encode() + b"\n")
        out, err = process.communicate(timeout=timeout)
        while select.select([master], [], [], 0.2)[0]:
            try:
                shown += os.read(master, 1024)
            except OSError:  # the terminal's last user has gone
                break
        return process.returncode, out, err, shown
    finally:
        process.kill()
        os.close(master)
