"""epoll, the Linux backend.

epoll keeps ONE kernel registration per file descriptor, with a single event
mask. Read and write interest are therefore merged into that mask, and a
change to either is an EPOLL_CTL_MOD of the whole mask, never a second
registration (which the kernel refuses with EEXIST). A result carries the
mask of everything that is true of the fd at once, so every result is tested
for both EPOLLIN and EPOLLOUT: a busy socket that is readable and writable
in the same pass is reported as both, or its writer would starve.
EPOLLHUP and EPOLLERR count as readable, so the reader meets end of file, and
as writable for a write interest (see Poller._mask_results).
"""
from __future__ import absolute_import

import select

from transport.core.poller import Poller

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_HUP = select.EPOLLHUP | select.EPOLLERR


class EpollPoller(Poller):
    name = 'epoll'

    def __init__(self):
        Poller.__init__(self)
        self._epoll = select.epoll()

    def _apply(self, fd, old, new):
        if new is None:
            try:
                self._epoll.unregister(fd)
            except (OSError, IOError, ValueError):
                pass  # already closed: the kernel dropped it with the fd
            return
        mask = (_IN if new[0] else 0) | (_OUT if new[1] else 0)
        if old is None:
            self._epoll.register(fd, mask)
        else:
            self._epoll.modify(fd, mask)

    def poll(self, timeout):
        events = self._epoll.poll(-1 if timeout is None else timeout)
        return self._mask_results(events, _IN, _OUT, _HUP)

    def close(self):
        Poller.close(self)
        self._epoll.close()
