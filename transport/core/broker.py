"""The broker: one event-loop thread per process.

It owns the poller and runs every I/O callback, timer and deferred call on
its own thread, so the state of streams and the router is touched by one
thread only. Other threads hand work to it with defer(), which wakes the loop
through a self-pipe; writes that the kernel accepts at once never need it
(see stream.py).
"""
from __future__ import absolute_import

import errno
import itertools
import os
import sys

from transport.core.compat import (
    Event,
    deque,
    get_ident,
    heappop,
    heappush,
    make_pipe,
    monotonic,
    retry_eintr,
    set_nonblocking,
    start_daemon_thread,
)
from transport.core.poller import best_poller


def _report_to_stderr(context, exc_info):
    import traceback
    try:
        sys.stderr.write('transport: error in %s:\n%s' % (
            context, ''.join(traceback.format_exception(*exc_info))))
    except Exception:  # 2.7: text and UTF-8 bytes that do not mix; the loop goes on
        sys.stderr.write('transport: error in %r: %r\n' % (context, exc_info[1]))


class Timer(object):
    """A callback scheduled on the broker; cancel() before it fires to drop it."""

    __slots__ = ('when', 'fn', 'args', 'cancelled')

    def __init__(self, when, fn, args):
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self):
        self.cancelled = True
        self.fn = self.args = None  # what it would have called goes now, not at its time


class Broker(object):
    """Runs the event loop on a daemon thread. Start with start(), end with shutdown()."""

    def __init__(self, poller=None, name='transport-broker', on_error=_report_to_stderr):
        self.poller = poller or best_poller()
        self.name = name
        self.on_error = on_error
        self._readers = {}
        self._writers = {}
        self._changed = set()
        self._timers = []
        self._timer_seq = itertools.count()
        self._deferred = deque()
        self._woken = False
        self._running = False
        self._thread_id = None
        self._stopped = Event()
        self._shutdown_hooks = []
        self._wake_r, self._wake_w = make_pipe()
        set_nonblocking(self._wake_r)
        set_nonblocking(self._wake_w)
        self.start_reading(self._wake_r, self._drain_wakeups)

    # -- threads -----------------------------------------------------------

    def start(self):
        self._running = True
        self._thread_id = start_daemon_thread(self._run, self.name)

    def in_broker_thread(self):
        return get_ident() == self._thread_id

    def defer(self, fn, *args):
        """Run fn(*args) on the broker thread soon; safe from any thread."""
        self._deferred.append((fn, args))
        if not self._woken and not self.in_broker_thread():
            self._woken = True
            try:
                os.write(self._wake_w, b'x')
            except OSError as e:
                # EBADF, EPIPE: the loop has ended (or is ending): nothing to wake.
                if e.errno not in (errno.EAGAIN, errno.EBADF, errno.EPIPE):
                    raise

    def call_soon_or_now(self, fn, *args):
        """Run fn(*args) now if on the broker thread, else defer it."""
        if self.in_broker_thread():
            fn(*args)
        else:
            self.defer(fn, *args)

    def _drain_wakeups(self, fd):
        try:
            while os.read(fd, 4096):
                pass
        except OSError as e:
            if e.errno != errno.EAGAIN:
                raise

    # -- registrations (broker thread only) -------------------------------

    def start_reading(self, fd, callback):
        self._readers[fd] = callback
        self._update(fd)

    def stop_reading(self, fd):
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def start_writing(self, fd, callback):
        self._writers[fd] = callback
        self._update(fd)

    def stop_writing(self, fd):
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def _update(self, fd):
        # Events already collected in this pass for fd describe the old
        # registration (perhaps another file that had the same number): skip them.
        self._changed.add(fd)
        readable = fd in self._readers
        writable = fd in self._writers
        if readable or writable:
            self.poller.set_interest(fd, readable, writable)
        else:
            self.poller.unregister(fd)

    def call_later(self, delay, fn, *args):
        """Schedule fn(*args) after delay seconds (broker thread only); returns a Timer."""
        timer = Timer(monotonic() + delay, fn, args)
        heappush(self._timers, (timer.when, next(self._timer_seq), timer))
        return timer

    def add_shutdown_hook(self, fn):
        """fn() runs on the broker thread when the loop ends, stopped or failed: after it,
        nothing is read or written, so it must fail what still waits on the loop."""
        self._shutdown_hooks.append(fn)

    # -- the loop -----------------------------------------------------------

    def _run(self):
        self._thread_id = get_ident()  # before start() returns it: callbacks may ask at once
        try:
            while self._running:
                self._loop_once()
        except Exception:
            self.on_error('the broker loop', sys.exc_info())
        finally:
            for hook in self._shutdown_hooks:
                self._guarded('a shutdown hook', hook)
            self.poller.close()
            wake_r, wake_w = self._wake_r, self._wake_w
            self._wake_r = self._wake_w = -1  # a late defer() writes to no one's file
            os.close(wake_w)  # the writing end first: a racing defer() meets EBADF
            os.close(wake_r)
            self._thread_id = None  # its id may be reused by another thread
            self._stopped.set()

    def _loop_once(self):
        timeout = None
        if self._deferred:
            timeout = 0
        elif self._timers:
            timeout = max(0, self._timers[0][0] - monotonic())
        self._changed.clear()
        for fd, readable, writable in retry_eintr(self.poller.poll, timeout):
            if readable and fd not in self._changed:
                callback = self._readers.get(fd)
                if callback is not None:
                    self._guarded(callback, callback, fd)
            if writable and fd not in self._changed:
                callback = self._writers.get(fd)
                if callback is not None:
                    self._guarded(callback, callback, fd)
        if self._timers:
            self._run_timers()
        # Cleared before the queue is read: a defer() that lands after this
        # point writes a wake-up byte of its own, so none is left waiting.
        self._woken = False
        for _ in range(len(self._deferred)):
            fn, args = self._deferred.popleft()
            self._guarded(fn, fn, *args)

    def _run_timers(self):
        now = monotonic()
        while self._timers and self._timers[0][0] <= now:
            timer = heappop(self._timers)[2]
            if not timer.cancelled:
                self._guarded(timer.fn, timer.fn, *timer.args)

    def _guarded(self, what, fn, *args):
        try:
            fn(*args)
        except BaseException:  # a callback's sys.exit() must not end the loop either
            self.on_error(what, sys.exc_info())

    def stop(self):
        """End the loop after the current pass (broker thread)."""
        self._running = False

    def shutdown(self, timeout=5.0):
        """Stop the loop from another thread and wait for it to end."""
        if self._thread_id is None:
            return
        self.defer(self.stop)
        if not self.in_broker_thread():
            self._stopped.wait(timeout)
