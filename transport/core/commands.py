"""Running commands on a target, with output streamed back as it comes.

run() starts the command in its own process group (so a timeout can kill
everything it started), feeds it `input`, and sends each chunk of stdout
and stderr to the caller's output handle as soon as it is read: the target
never holds the output, and the caller holds it once. With a timeout, a
(0, b'') chunk first says the command has started (the caller's own deadline
counts from there, not from a call that may wait behind others). It returns
the exit status, or 'timeout' after killing the group. With use_pty the
command gets a new pseudo-terminal (pty_size columns and rows, 80 by 24
unless told) as its controlling terminal, stdin, stdout and stderr (so its
output all comes back as stdout, as from ssh -t); after the input (if any)
the terminal's end-of-file character is typed, so a command reading to the
end of its input ends as it does on pipes.

Output has a window: once WINDOW_OPENS bytes of output messages have gone,
(ACKS, handle) tells the caller where to acknowledge what it has received
(the bytes of the messages on its output handle, counted from the first),
and while OUTPUT_WINDOW bytes are unacknowledged the command's output is not
read (it waits, as on a pipe nobody reads), so a command faster than the way
back is never held in this process's memory, nor an intermediary's.

With live input (Context.start) the command runs alongside later calls (a
thread of its own pumps it; its reply comes last on the output handle, as
EXITED) and its stdin stays open while it runs: the caller sends chunks to a
handle of the command's own (announced with (INPUT_READY, handle) on the
caller's input handle), an empty chunk ends the input, and what each write
to the command takes is acknowledged with (INPUT_TAKEN, bytes) (what it drops
once the command has closed its stdin too), so the caller never has more
than a window in flight. Only the parent side may send input. The input ends
with the command (its exit, once its output is closed), with INPUT_ENDED. On a
pty, (INPUT_TERMINAL, handle) says where a new size (columns, rows) goes. A target
that loses its parent hangs up on the commands still running (SIGHUP to their
groups), as a closed terminal would, rather than leave them behind.
"""
from __future__ import absolute_import

import collections
import errno
import os
import select
import signal
import subprocess
import sys
import threading
import time

from transport.core import codec, dispatch
from transport.core.compat import (
    PY2,
    allocate_lock,
    binary,
    integer_types,
    make_pipe,
    set_nonblocking,
)
from transport.core.framing import Message
from transport.core.os_strings import os_string, path_string

CHUNK = 64 * 1024
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
# The process groups of the commands running now (each command leads its own), with
# the caller's output handle of each (which names one command in signal_running).
running = {}
# Commands being started: for each, the signals sent meanwhile (it gets them once started).
_starting = {}
# Signals sent to one command (by its caller's output handle) before its call began here
# (it waited behind another call): it gets them once started. The last EARLY_KEPT only
# (one sent to a command that had just ended stays unclaimed).
_early = collections.OrderedDict()
EARLY_KEPT = 64
_lock = allocate_lock()
STARTED = 0  # the stream number of the chunk that says a timed command has started
EXITED = 3  # the stream number of the last message of a command run alongside: its reply
ACKS = 4  # the stream number of the word that says where acknowledgements of output go
OUTPUT_WINDOW = 4 * 1024 * 1024  # bytes of output sent and not acknowledged, at most
WINDOW_OPENS = OUTPUT_WINDOW // 4  # bytes sent before acknowledgements are asked for
# What the caller's input handle gets: where to send input, how much was taken, that the
# command has ended (nothing more is taken), and where to send a pty's new size.
INPUT_READY, INPUT_TAKEN, INPUT_ENDED, INPUT_TERMINAL = 0, 1, 2, 3
EXIT_POLL = 0.05  # how often a command that closed its output is looked at, while it reads


def _default_signals():
    """In a Python 2 child before exec (Python 3's subprocess does the same): SIGPIPE
    and SIGXFSZ as a shell leaves them, not ignored as Python leaves them here
    (`yes | head` would report a broken pipe)."""
    for name in ('SIGPIPE', 'SIGXFSZ'):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)


def _new_session_py2():
    os.setsid()
    _default_signals()


def _sane_signals():
    """Undo what a call may have left that commands rely on (main thread, before a
    start): SIGPIPE ignored here, so a write to a command that stopped reading fails
    instead of ending this process; SIGCHLD not ignored, or exit statuses are lost;
    SIGINT not ignored, or commands inherit that and an interrupt cannot stop them."""
    try:
        if signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL:
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: nothing a call did there
        pass


def _popen(cmd, shell, env, cwd, stdin, executable):
    kwargs = dict(shell=shell, cwd=cwd, env=env, stdin=stdin, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, close_fds=True, executable=executable)
    if PY2:
        kwargs['preexec_fn'] = _new_session_py2
    else:
        kwargs['start_new_session'] = True  # keeps CPython's fast vfork path
    return subprocess.Popen(cmd, **kwargs)


def _popen_pty(cmd, shell, env, cwd, size, executable):
    """Start cmd on a new pseudo-terminal of size (columns, rows); return (proc, master fd)."""
    import fcntl  # here, not in the child: importing after fork can deadlock
    import termios
    master, slave = os.openpty()
    set_terminal_size(slave, size)

    def take_terminal():
        os.setsid()
        if PY2:
            _default_signals()
        try:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        except (AttributeError, IOError, OSError):
            pass  # still a terminal on stdio, just not the controlling one

    try:
        proc = subprocess.Popen(cmd, shell=shell, cwd=cwd, env=env, stdin=slave, stdout=slave,
                                stderr=slave, close_fds=True, preexec_fn=take_terminal,
                                executable=executable)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return proc, master


class _CallerHandle(object):
    """A handle in the context that started a command (taken while the call runs, as
    the command may outlive it): its output goes to one, its input's words to another."""

    def __init__(self, handle):
        self.router = dispatch.current.router
        self.caller = dispatch.current.caller
        self.handle = handle

    def tell(self, value):
        self.router.send(Message(self.caller, self.router.context_id, self.handle,
                                 codec.encode(value)))


class _Wakeup(object):
    """A pipe the pump waits on (fd) and the broker thread writes to (wake()), closed
    under a lock, so that a late wake-up never writes to a descriptor reused since."""

    def __init__(self):
        self.fd, self._write_fd = make_pipe()
        set_nonblocking(self.fd)
        set_nonblocking(self._write_fd)
        self._lock = allocate_lock()
        self._closed = False

    def wake(self):
        with self._lock:
            if not self._closed:
                try:
                    os.write(self._write_fd, b'.')
                except OSError:
                    pass  # full: the pump has wake-ups waiting already

    def drain(self):
        try:
            os.read(self.fd, 4096)
        except OSError:
            pass

    def close(self):
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.fd)
                os.close(self._write_fd)


class _Output(_CallerHandle):
    """The caller's output handle, with the window the module's docstring describes.
    full() says the pump must not read output; wake_fd (once the window exists)
    becomes readable when an acknowledgement comes (woken() takes that in)."""

    def __init__(self, handle):
        _CallerHandle.__init__(self, handle)
        self.sent = 0
        self.acknowledged = 0
        self.ack_handle = None
        self.wake_fd = self._wakeup = None
        self.closed = False

    def send(self, stream, data):
        """A chunk of output: (stream, bytes)."""
        self.tell((stream, binary(data)))

    def tell(self, value):
        data = codec.encode(value)
        self.sent += len(data)
        self.router.send(Message(self.caller, self.router.context_id, self.handle, data))
        if self.ack_handle is None and self.sent >= WINDOW_OPENS and not self.closed:
            self._wakeup = _Wakeup()
            self.wake_fd = self._wakeup.fd
            self.ack_handle = self.router.add_parent_handler(self._on_ack)
            self.tell((ACKS, self.ack_handle))

    def full(self):
        return self.sent - self.acknowledged >= OUTPUT_WINDOW

    def _on_ack(self, msg):
        """Broker thread: the bytes the caller has received, in all."""
        count = codec.decode(msg.data)
        if not (isinstance(count, integer_types) and not isinstance(count, bool)
                and self.acknowledged <= count <= self.sent):
            raise ValueError('an acknowledgement of %r bytes of output, of %d sent'
                             % (count, self.sent))
        self.acknowledged = count
        self._wakeup.wake()

    def woken(self):
        self._wakeup.drain()

    def close(self):
        """The pump, as the command has ended: no more acknowledgements are taken."""
        self.closed = True
        if self.ack_handle is not None:
            self.router.remove_handler(self.ack_handle)
            self._wakeup.close()


def set_terminal_size(fd, size):
    """Give the terminal at fd size (columns, rows); its foreground processes get SIGWINCH."""
    import fcntl
    import struct
    import termios
    columns, rows = size
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, columns, 0, 0))


def run(cmd, shell, env, cwd, stdin_data, timeout, output_handle, use_pty=False,
        replace_env=False, input_handle=None, pty_size=(80, 24), executable=None):
    """Run cmd; stream (1 or 2, bytes) chunks to output_handle; return exit code or 'timeout'.

    env changes this process's environment for the command; with replace_env it is the
    command's whole environment. executable, given with a list, is the program run (the
    list's first item its argv[0], as sshd names a shell without its path). With
    input_handle (the caller's), the input is live
    (see the module's docstring) instead of stdin_data, and the command runs alongside
    later calls: this returns 'started' once it has started, and a thread of its own
    streams the output and ends it with (EXITED, the reply run() would have given)."""
    output = _Output(output_handle)
    if timeout is not None:
        output.send(STARTED, b'')
    environment = None
    if env or replace_env:
        environment = {} if replace_env else dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                environment.pop(os_string(key), None)
            else:
                environment[os_string(key)] = os_string(value)
    if isinstance(cmd, (list, tuple)):
        shell = False
        cmd = [os_string(arg) for arg in cmd]
    else:
        cmd = os_string(cmd)
    if cwd is not None:
        cwd = path_string(cwd)
    if executable is not None:
        executable = os_string(executable)
    _sane_signals()
    token = object()
    with _lock:
        _starting[token] = (output_handle, _early.pop(output_handle, []))
    proc = None
    live = input_handle is not None
    try:
        proc, master, pump = _start(cmd, shell, environment, cwd, stdin_data, use_pty, live,
                                    pty_size, executable)
    finally:
        _started(token, proc)
    if not live:
        return _finish(proc, master, pump, _Input(stdin_data), timeout, output)
    feed = _LiveInput(input_handle, master)
    thread = threading.Thread(target=_finish_alongside, name='command %d' % proc.pid,
                              args=(proc, master, pump, feed, timeout, output))
    thread.daemon = True
    thread.start()
    return 'started'


def _finish(proc, master, pump, feed, timeout, output):
    """Pump the command's input and output to its end; its exit status, or 'timeout'."""
    try:
        return pump(proc, master, feed, timeout, output)
    finally:
        feed.close()
        output.close()
        running.pop(proc.pid, None)


def _finish_alongside(proc, master, pump, feed, timeout, output):
    try:
        reply = ('ok', _finish(proc, master, pump, feed, timeout, output))
    except BaseException:
        reply = dispatch.error_reply(sys.exc_info())
    output.send(EXITED, codec.encode(reply))


# A program the kernel will not run (ENOEXEC: a script without '#!') runs as a shell
# script, as execvp, env and ssh's login shell run it: sh execs it and falls back itself.
_EXEC_BY_SHELL = ['/bin/sh', '-c', 'exec "$0" "$@"']


def _start(cmd, shell, environment, cwd, stdin_data, use_pty, live, pty_size, executable):
    try:
        return _start_once(cmd, shell, environment, cwd, stdin_data, use_pty, live, pty_size,
                           executable)
    except OSError as e:
        if shell or e.errno != errno.ENOEXEC or executable is not None:
            if shell or not e.errno:
                raise
            # What could not be used, named once (2.7 names nothing, 3.6 names it twice).
            missing_cwd = cwd is not None and not os.path.isdir(cwd)
            named = OSError(e.errno, os.strerror(e.errno),
                            e.filename or (cwd if missing_cwd else executable or cmd[0]))
            named.__suppress_context__ = True  # (raise ... from None, which 2.7 cannot parse)
            raise named
    return _start_once(_EXEC_BY_SHELL + list(cmd), False, environment, cwd, stdin_data,
                       use_pty, live, pty_size, None)


def _start_once(cmd, shell, environment, cwd, stdin_data, use_pty, live, pty_size, executable):
    if use_pty:
        proc, master = _popen_pty(cmd, shell, environment, cwd, pty_size, executable)
        pump = _pump_pty
    else:
        devnull = None
        if stdin_data is None and not live:
            devnull = open(os.devnull, 'rb')
            stdin = devnull
        else:
            stdin = subprocess.PIPE
        try:
            proc = _popen(cmd, shell, environment, cwd, stdin, executable)
        finally:
            if devnull is not None:
                devnull.close()
        master = None
        pump = _pump
    return proc, master, pump


def _started(token, proc):
    """A command has started (proc None: it failed to): it is running, and gets the
    signals sent while it was starting."""
    with _lock:
        output_handle, signals = _starting.pop(token)
        if proc is None:
            return
        running[proc.pid] = output_handle
    for signum in signals:
        _signal(proc.pid, signum)


def signal_running(value):
    """Send a signal to the process group of every command running now, or starting:
    value is its number, or (its number, the caller's output handle of one command)."""
    signum, only = value if isinstance(value, tuple) and len(value) == 2 else (value, None)
    if not isinstance(signum, integer_types) or not 0 < signum < 65:
        return
    with _lock:
        groups = [group for group, handle in running.items() if only in (None, handle)]
        starting = [signals for handle, signals in _starting.values() if only in (None, handle)]
        for signals in starting:
            signals.append(signum)
        if isinstance(only, integer_types) and not groups and not starting:
            _early.setdefault(only, []).append(signum)
            while len(_early) > EARLY_KEPT:
                _early.popitem(last=False)
    for group in groups:
        _signal(group, signum)


def _signal(group, signum):
    try:
        os.killpg(group, signum)
    except OSError:
        pass


def hang_up_running():
    """Send SIGHUP to the process group of every command still running (this process is
    leaving: as a terminal's hang-up would, it tells them nobody reads their output)."""
    signal_running(signal.SIGHUP)


class _Input(object):
    """A command's input, given whole with the call."""

    live = False
    wake_fd = None

    def __init__(self, data):
        self.pending = data or b''
        self.ended = True  # nothing comes after what is pending
        self.unfinished_line = bool(data) and not data.endswith((b'\n', b'\r'))

    def write_to(self, fd):
        """Write what non-blocking fd takes of the pending input. (Writable means a page
        is free, not the chunk: a blocking write would wait for a command that is itself
        waiting for its output to be read.) Once the reader has gone, the rest is dropped."""
        try:
            taken = os.write(fd, self.pending[:CHUNK])
        except OSError as e:
            if e.errno in _AGAIN:
                return
            if e.errno not in (errno.EPIPE, errno.EIO):
                raise
            self.reader_gone()
            return
        self.pending = self.pending[taken:]
        self._taken(taken)

    def reader_gone(self):
        self._taken(len(self.pending))
        self.pending = b''

    def _taken(self, count):
        pass

    def refill(self):
        pass

    def release_terminal(self):
        pass

    def close(self):
        pass


class _LiveInput(_Input):
    """A command's input, sent by the caller while it runs. The broker thread queues
    each chunk and wakes the pump through a pipe; the pump acknowledges what it writes."""

    live = True

    def __init__(self, reply_handle, terminal=None):
        _Input.__init__(self, b'')
        self.ended = False
        self.gone = False
        self.chunks = collections.deque()
        self._lock = allocate_lock()  # the terminal is let go under it
        self._wakeup = _Wakeup()
        self.wake_fd = self._wakeup.fd
        self.router = dispatch.current.router
        self.words = _CallerHandle(reply_handle)
        self.handle = self.router.add_parent_handler(self._on_chunk)
        self._tell(INPUT_READY, self.handle)
        self.terminal = terminal  # a pty's master: its size may change
        self.terminal_handle = None
        if terminal is not None:
            self.terminal_handle = self.router.add_parent_handler(self._on_resize)
            self._tell(INPUT_TERMINAL, self.terminal_handle)

    def _on_resize(self, msg):
        """Broker thread: (columns, rows), the terminal's new size."""
        size = codec.decode(msg.data)
        if not (isinstance(size, tuple) and len(size) == 2
                and all(isinstance(n, int) and 0 < n < 65536 for n in size)):
            raise ValueError('a terminal size is (columns, rows), not %r' % (size,))
        with self._lock:
            if self.terminal is not None:
                set_terminal_size(self.terminal, size)

    def release_terminal(self):
        """The pump is about to close the terminal: no size goes to it from now on."""
        if self.terminal_handle is not None:
            self.router.remove_handler(self.terminal_handle)
        with self._lock:
            self.terminal = None

    def _on_chunk(self, msg):
        """Broker thread."""
        self.chunks.append(msg.data)
        self._wakeup.wake()

    def refill(self):
        """The pump, woken: take the chunks that came."""
        self._wakeup.drain()
        while self.chunks and not self.ended:
            chunk = self.chunks.popleft()
            if not chunk:
                self.ended = True
            elif self.gone:
                self._taken(len(chunk))
            else:
                self.pending += chunk
                self.unfinished_line = not chunk.endswith((b'\n', b'\r'))

    def reader_gone(self):
        self.gone = True
        _Input.reader_gone(self)

    def _taken(self, count):
        if count:
            self._tell(INPUT_TAKEN, count)

    def _tell(self, kind, value):
        self.words.tell((kind, value))

    def close(self):
        self.router.remove_handler(self.handle)
        self._wakeup.close()
        self._tell(INPUT_ENDED, 0)


def _pump(proc, _master, feed, timeout, output):
    """Feed the input, stream the output; the exit status, or 'timeout'. Input given
    whole is written to its end; a live input ends with the command (its process's
    exit, once its output is closed)."""
    deadline = None if timeout is None else time.time() + timeout
    readers = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
    stdin = proc.stdin
    if stdin is not None:
        set_nonblocking(stdin.fileno())
    while readers or (stdin is not None and not (feed.live and proc.poll() is not None)):
        if stdin is not None and feed.ended and not feed.pending:
            stdin.close()
            stdin = None
            continue
        wait = None if deadline is None else deadline - time.time()
        if wait is not None and wait <= 0:
            return _kill(proc)
        if not readers:  # a live input's command with its output closed: look for its exit
            wait = EXIT_POLL if wait is None else min(wait, EXIT_POLL)
        watched = [output.wake_fd] if output.full() else list(readers)
        if feed.wake_fd is not None and not feed.ended:
            watched.append(feed.wake_fd)
        writers = [stdin.fileno()] if stdin is not None and feed.pending else []
        readable, writable = _select(watched, writers, wait)
        if writable:
            feed.write_to(writable[0])
        for fd in readable:
            if fd == feed.wake_fd:
                feed.refill()
                continue
            if fd == output.wake_fd:
                output.woken()
                continue
            chunk = os.read(fd, CHUNK)
            if chunk:
                output.send(readers[fd], chunk)
            else:
                del readers[fd]
    if stdin is not None:
        stdin.close()
    proc.stdout.close()
    proc.stderr.close()
    return _wait(proc, deadline)


def _select(readers, writers, wait):
    """select() for reading and writing; an interrupted wait counts as nothing ready."""
    try:
        readable, writable, _ = select.select(readers, writers, [], wait)
    except (OSError, select.error) as e:
        if e.args[0] != errno.EINTR:
            raise
        return [], []
    return readable, writable


def _pump_pty(proc, master, feed, timeout, output):
    deadline = None if timeout is None else time.time() + timeout
    input_ended = False
    source = feed
    set_nonblocking(master)  # as for a pipe: a blocking write could wait for ever
    try:
        while True:
            wait = None if deadline is None else deadline - time.time()
            if wait is not None and wait <= 0:
                return _kill(proc)
            if feed.ended and not feed.pending and not input_ended:
                input_ended = True
                end = _end_of_input(master, feed.unfinished_line)
                if end:
                    feed = _Input(end)  # typed like the rest, not acknowledged
            watched = [output.wake_fd] if output.full() else [master]
            if feed.wake_fd is not None and not feed.ended:
                watched.append(feed.wake_fd)
            readable, writable = _select(watched, [master] if feed.pending else [], wait)
            if writable:
                feed.write_to(master)
            if feed.wake_fd in readable:
                feed.refill()
            if output.wake_fd in readable:
                output.woken()
            if master in readable:
                try:
                    chunk = os.read(master, CHUNK)
                except OSError as e:
                    if e.errno in _AGAIN:
                        continue
                    if e.errno != errno.EIO:  # EIO: every holder of the terminal has gone
                        raise
                    chunk = b''
                if not chunk:
                    break
                output.send(1, chunk)
    finally:
        source.release_terminal()
        os.close(master)
    return _wait(proc, deadline)


def _end_of_input(master, unfinished_line):
    """What ends a terminal's input once it has all been written: the terminal's
    end-of-file character, as a user at it would type (twice after an unfinished
    line: the first only hands that line over). Nothing in raw mode, where the
    program reads keys and no character means end of file, nor when the terminal
    has no such character. (A program that turns raw mode on only later reads
    each one typed before as a NUL byte, as it would a user's.)"""
    import termios
    try:
        attributes = termios.tcgetattr(master)
    except (termios.error, OSError):
        return b''
    if not attributes[3] & termios.ICANON:
        return b''
    eof = attributes[6][termios.VEOF]
    eof = eof if isinstance(eof, bytes) else bytes(bytearray([eof]))
    if eof == b'\0':  # disabled
        return b''
    return eof * (2 if unfinished_line else 1)


def _wait(proc, deadline):
    """The exit status once the output is closed; kill the group at the deadline."""
    if deadline is None:
        return proc.wait()
    if not PY2:
        try:
            return proc.wait(max(0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            return _kill(proc)
    while proc.poll() is None:
        if time.time() >= deadline:
            return _kill(proc)
        time.sleep(0.005)
    return proc.returncode


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()
    return 'timeout'
