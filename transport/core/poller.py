"""The poller interface and the choice of backend.

A poller watches file descriptors for readability and writability. The
broker keeps one interest per fd (read, write, or both) and calls
set_interest() whenever it changes; poll() returns (fd, readable, writable)
tuples. Hang-up and error conditions are reported as readable, so the reader
sees end of file and closes the stream, and as writable for a write interest,
so the writer meets the error.

Backends, one module each: poller_epoll (Linux), poller_kqueue (BSD, macOS),
poller_poll and poller_select (everywhere else).
"""
from __future__ import absolute_import

import select


class Poller(object):
    """Interface shared by every backend."""

    name = 'base'

    def __init__(self):
        self._interest = {}

    def registered(self, fd):
        """The (readable, writable) interest registered for fd, or None."""
        return self._interest.get(fd)

    def set_interest(self, fd, readable, writable):
        """Watch fd for the given conditions; both False unregisters it."""
        if not (readable or writable):
            self.unregister(fd)
            return
        old = self._interest.get(fd)
        self._interest[fd] = (readable, writable)
        self._apply(fd, old, (readable, writable))

    def unregister(self, fd):
        """Stop watching fd (call before closing it); unknown fds are ignored."""
        old = self._interest.pop(fd, None)
        if old is not None:
            self._apply(fd, old, None)

    def _apply(self, fd, old, new):
        """Tell the kernel that fd's interest went from old to new (None: none)."""
        raise NotImplementedError

    def poll(self, timeout):
        """Wait up to timeout seconds (None: forever); return [(fd, readable, writable)]."""
        raise NotImplementedError

    def close(self):
        self._interest.clear()

    def _mask_results(self, events, in_mask, out_mask, hup_mask):
        """Turn (fd, event mask) pairs into results, testing every mask for both
        conditions; hang-up and error count as readable, so the reader meets end
        of file, and as writable for a write interest, so the writer meets its
        error (a pipe whose reader has gone reports nothing else)."""
        results = []
        interest = self._interest
        for fd, mask in events:
            wanted = interest.get(fd)
            if wanted is None:
                continue
            hung_up = bool(mask & hup_mask)
            readable = (bool(mask & in_mask) or hung_up) and wanted[0]
            writable = (bool(mask & out_mask) or hung_up) and wanted[1]
            if readable or writable:
                results.append((fd, readable, writable))
        return results


NAMES = ('epoll', 'kqueue', 'poll', 'select')  # best first; select is everywhere


def available_pollers():
    """Every backend this platform offers, best first."""
    return [_backend(name) for name in NAMES if name == 'select' or hasattr(select, name)]


def best_poller():
    """An instance of the best backend available here (only its module is imported)."""
    return _backend(next(n for n in NAMES if n == 'select' or hasattr(select, n)))()


def _backend(name):
    """The poller class of transport.core.poller_<name>, e.g. EpollPoller."""
    module = __import__('transport.core.poller_' + name, fromlist=['*'])
    return getattr(module, name.capitalize() + 'Poller')
