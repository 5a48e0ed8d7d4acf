"""Small portability helpers shared by the core on Python 2.7 and 3.6+.

The core travels to targets that may run any of those interpreters, so every
difference between them that the core needs is settled here, once.
"""
from __future__ import absolute_import

import errno
import fcntl
import os
import sys
import time

PY2 = sys.version_info[0] == 2

if PY2:
    text_type = unicode  # noqa: F821 (Python 2 only)
    integer_types = (int, long)  # noqa: F821 (Python 2 only)
    native_str = str
else:
    text_type = str
    integer_types = (int,)
    native_str = str

# Threads. On Python 3 the core's primitives come from _thread: importing
# threading (and functools and collections with it) would cost a target ~4 ms
# of CPU, a fifth of its start, and a controller's start as much. A target's
# calls run on its main thread, so an application that imports threading later
# does so there and sees the true main thread. Python 2.7's locks cannot wait
# with a timeout: there threading serves.
if PY2:
    import threading

    import thread as _thread
    Event = threading.Event
else:
    import _thread

    class Event(object):
        """A one-shot event: set() from any thread wakes every wait(); it is never cleared."""

        def __init__(self):
            self._flag = False
            self._unset = _thread.allocate_lock()  # held until set()
            self._unset.acquire()
            self._guard = _thread.allocate_lock()

        def is_set(self):
            return self._flag

        def set(self):
            with self._guard:
                if not self._flag:
                    self._flag = True
                    self._unset.release()

        def wait(self, timeout=None):
            if self._flag:
                return True
            limit = -1 if timeout is None else min(max(timeout, 0), _thread.TIMEOUT_MAX)
            if self._unset.acquire(True, limit):
                self._unset.release()  # and the next waiter goes through
                return True
            return self._flag

allocate_lock = _thread.allocate_lock
get_ident = _thread.get_ident

try:
    from _collections import deque  # noqa: F401 (the collections module costs ~2 ms more)
except ImportError:
    from collections import deque  # noqa: F401

try:
    from _heapq import heappop, heappush  # noqa: F401 (the heapq module is one more file)
except ImportError:
    from heapq import heappop, heappush  # noqa: F401

try:
    from _queue import Empty, SimpleQueue  # noqa: F401 (Python 3.7+: in C, it imports nothing)
except ImportError:
    if PY2:
        from Queue import Empty  # noqa: F401
        from Queue import Queue as SimpleQueue  # noqa: F401
    else:
        from queue import Empty  # noqa: F401 (Python 3.6)
        from queue import Queue as SimpleQueue  # noqa: F401


def start_daemon_thread(fn, name):
    """Run fn() on a daemon thread; return the thread's ident.

    A named threading.Thread (as logging reports it) where the application has
    loaded threading (logging does); otherwise a bare _thread thread, as on a
    booting target or a controller script that needs nothing more.
    """
    threading_module = sys.modules.get('threading')
    if threading_module is None:
        return _thread.start_new_thread(fn, ())
    thread = threading_module.Thread(target=fn, name=name)
    thread.daemon = True
    thread.start()
    return thread.ident


try:
    monotonic = time.monotonic
except AttributeError:  # Python 2.7
    monotonic = time.time


def set_nonblocking(fd, enabled=True):
    """Turn O_NONBLOCK on or off for fd."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if enabled:
        flags |= os.O_NONBLOCK
    else:
        flags &= ~os.O_NONBLOCK
    fcntl.fcntl(fd, fcntl.F_SETFL, flags)


def set_cloexec(fd):
    """Make fd close on exec, so children we spawn never inherit it."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFD)
    fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)


def make_pipe():
    """Return (read_fd, write_fd), both close-on-exec."""
    r, w = os.pipe()
    set_cloexec(r)
    set_cloexec(w)
    return r, w


def retry_eintr(fn, *args):
    """Call fn(*args), retrying when a signal interrupts it (Python 2.7 has no PEP 475)."""
    while True:
        try:
            return fn(*args)
        except (OSError, IOError) as e:
            if e.errno != errno.EINTR:
                raise


def exit_now(status=0):
    """Leave at once (stdout and stderr flushed), without waiting for threads still running."""
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass
    os._exit(status)


def binary(data):
    """Mark data read from a file or pipe as binary for the codec.

    On 2.7 a native str would travel as text; bytearray travels as bytes.
    """
    return bytearray(data) if PY2 else data
