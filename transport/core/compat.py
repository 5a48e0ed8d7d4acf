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
    import Queue as queue  # noqa: F401
else:
    text_type = str
    integer_types = (int,)
    native_str = str
    import queue  # noqa: F401

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


def to_text(value):
    """Decode bytes as UTF-8 for messages and names; text passes through."""
    if isinstance(value, bytes) and not PY2:
        return value.decode('utf-8', 'replace')
    return value


def binary(data):
    """Mark data read from a file or pipe as binary for the codec.

    On 2.7 a native str would travel as text; bytearray travels as bytes.
    """
    return bytearray(data) if PY2 else data
