"""A target's stderr, kept from the processes its calls start.

A target boots with fds 1 and 2 on its connection's stderr (over ssh, the
session's). A process a call starts (subprocess.Popen in a function, os.system)
inherits them, and while it runs ssh keeps the session open: a killed
interpreter would go unseen until that process ended. relay_stderr() gives fds
1 and 2 a pipe instead, read by a small process of its own that copies it to
the connection's stderr: when the interpreter ends, that process copies what
is left in the pipe (its last words) and ends too, closing the connection's
stderr whatever still runs. The controller sends this module and a call to
relay_stderr() ahead of a context's first call.

The relay is forked twice, as a detached job is, so it is nobody's child (a
call that waits for any child of the interpreter never finds it) and signals
sent to the interpreter's process group do not reach it; it knows the
interpreter has ended when a pipe only the interpreter holds the writing end
of reads end of file. Being a fork, it keeps the pages of the interpreter's
memory that the interpreter changes after it (~3 MB of a fresh target's),
and it costs a connection ~2 ms; a thread in the interpreter would cost
neither, but what the interpreter wrote on its stderr just before it ended (a
fatal error's message) would then be lost with it.
"""
from __future__ import absolute_import

import codecs
import errno
import fcntl
import io
import os
import select
import sys

from transport.core.compat import PY2, retry_eintr, set_cloexec

MAX_FD = 65536
CHUNK = 65536
# The interpreter holds the writing end of this pipe while it lives (None: not relayed).
_alive = None


def relay_stderr():
    global _alive
    if _alive is not None:
        return
    data_r, data_w = os.pipe()
    alive_r, alive_w = os.pipe()
    for fd in (data_r, data_w, alive_r, alive_w):
        set_cloexec(fd)
    for stream in (sys.stdout, sys.stderr):  # what was written before goes first
        try:
            stream.flush()
        except Exception:
            pass
    pid = _fork()
    if pid == 0:  # leaves at once, once the relay is started
        started = False
        try:
            os.setsid()
            if os.fork() == 0:
                _relay(data_r, alive_r)
            else:
                started = True
        finally:
            os._exit(0 if started else 1)
    status = retry_eintr(os.waitpid, pid, 0)[1]
    os.close(data_r)
    os.close(alive_r)
    if status != 0:
        os.close(data_w)
        os.close(alive_w)
        raise OSError(errno.EAGAIN, 'the process that relays stderr could not be started')
    os.dup2(data_w, 1)  # dup2 makes both inherited, as they were
    os.dup2(data_w, 2)
    os.close(data_w)
    _alive = alive_w
    for name in ('stdout', 'stderr'):
        setattr(sys, name, _printing_utf8(getattr(sys, name)))


def _printing_utf8(stream):
    """stream, or one that writes text to it as UTF-8 where its encoding is ASCII (a pipe
    on 2.7, or 3.6 under the C locale), which refuses any other text: a call that prints
    "caf\u00e9" must not fail for it, as it does not on 3.7+."""
    encoding = getattr(stream, 'encoding', None) or 'ascii'
    try:
        if codecs.lookup(encoding).name != 'ascii':
            return stream
    except LookupError:
        return stream
    if PY2:
        return _Utf8File(stream)
    return io.TextIOWrapper(stream.buffer, 'utf-8', stream.errors,
                            line_buffering=stream.line_buffering)


class _Utf8File(object):
    """A Python 2 file that writes unicode as UTF-8 (and str as it is)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        if isinstance(text, unicode):  # noqa: F821 (Python 2 only)
            text = text.encode('utf-8')
        self._stream.write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _fork():
    """os.fork(), without Python 3.12+'s warning of a fork in a process with threads: as
    for a detached job (see jobs), this fork is the design, the child never touches the
    interpreter's connection, and the warning would name our code. (Neither re nor enum
    is imported for it: each would cost every connection milliseconds.)"""
    if sys.version_info < (3, 12):
        return os.fork()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return os.fork()


def _relay(data, alive):
    """In the relay process: copy data to fd 2 (the connection's stderr) until the
    interpreter ends, then what it left in the pipe, and return."""
    try:
        import _signal as signal  # the C module: signal.py imports enum (~3 ms of CPU)
    except ImportError:
        import signal  # Python 2.7's is the C module
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    os.dup2(data, 0)
    os.dup2(alive, 3)
    os.closerange(4, MAX_FD)
    while True:
        readable = retry_eintr(select.select, [0, 3], [], [])[0]
        if 3 in readable:  # the interpreter has ended: its last words, then leave
            fcntl.fcntl(0, fcntl.F_SETFL, fcntl.fcntl(0, fcntl.F_GETFL) | os.O_NONBLOCK)
            while _copy_some():
                pass
            return
        if not _copy_some():
            return


def _copy_some():
    """Copy what fd 0 has to fd 2; False at its end, or once it has nothing more to give."""
    try:
        data = retry_eintr(os.read, 0, CHUNK)
    except OSError as e:
        if e.errno == errno.EAGAIN:
            return False
        raise
    if not data:
        return False
    while data:
        data = data[retry_eintr(os.write, 2, data):]
    return True
