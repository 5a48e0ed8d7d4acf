"""Making every call start as a fresh process would, where it matters.

A target interpreter is reused for many calls, but each call should see
what a new process would:

- The resolver: before a call, if /etc/resolv.conf changed since the last
  one, res_init() makes libc re-read it (through ctypes, loaded only then).
  A stat() per call is all it costs otherwise.
- The working directory, the environment and the umask: after a call, they go
  back to the baseline (as at boot, or as baseline.set_baseline() last made them),
  so one call's os.chdir(), os.environ or os.umask() change does not leak into the
  next call or the commands run after it.
- Output: after a call, sys.stdout and sys.stderr are flushed, as a process's
  are when it ends, so what the call printed reaches the controller's log now
  (both are pipes here, which Python buffers), not when a buffer fills.
"""
from __future__ import absolute_import

import os
import sys

RESOLV_CONF = '/etc/resolv.conf'


def _resolv_stamp():
    try:
        st = os.stat(RESOLV_CONF)
    except OSError:
        return None
    return (st.st_mtime, st.st_ino, st.st_size)


def _environ_data():
    # The raw mapping behind os.environ: comparing it is cheap (no decoding).
    return getattr(os.environ, '_data', None) or getattr(os.environ, 'data', {})


class Baseline(object):
    """The state each call starts from, and the work to restore it."""

    def __init__(self):
        self.resolver_reloads = 0
        self._resolv = _resolv_stamp()
        self._res_init = None
        self.snapshot()

    def snapshot(self):
        try:
            self.cwd = os.getcwd()
        except OSError:
            self.cwd = '/'
        self.environ = dict(os.environ)
        self._environ_data = dict(_environ_data())
        self.umask = os.umask(0o022)
        os.umask(self.umask)

    def before_call(self):
        stamp = _resolv_stamp()
        if stamp != self._resolv:
            self._resolv = stamp
            self.reload_resolver()

    def reload_resolver(self):
        if self._res_init is None:
            self._res_init = _find_res_init() or False
        if self._res_init:
            self._res_init()
        self.resolver_reloads += 1

    def after_call(self):
        for f in sys.stdout, sys.stderr:
            try:
                f.flush()
            except Exception:  # whatever the call replaced them with, even closed
                pass
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        if cwd != self.cwd:
            try:
                os.chdir(self.cwd)
            except OSError:
                pass
        os.umask(self.umask)
        if _environ_data() != self._environ_data:
            for key in list(os.environ):
                if key not in self.environ:
                    del os.environ[key]
            for key, value in self.environ.items():
                if os.environ.get(key) != value:
                    os.environ[key] = value


def _find_res_init():
    try:
        import ctypes
        libc = ctypes.CDLL(None)
    except (ImportError, OSError):
        return None
    for name in ('__res_init', 'res_init'):
        fn = getattr(libc, name, None)
        if fn is not None:
            return fn
    return None


# The baseline of this process (created by the dispatcher).
current = None
