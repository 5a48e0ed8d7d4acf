"""poll(2), the portable backend for systems without epoll or kqueue.

Like epoll, poll() takes one entry per fd with a merged event mask, and each
result's mask is tested for both input and output. POLLHUP, POLLERR and
POLLNVAL count as readable, and as writable for a write interest.
"""
from __future__ import absolute_import

import select

from transport.core.poller import Poller

_IN = select.POLLIN
_OUT = select.POLLOUT
_HUP = select.POLLHUP | select.POLLERR | select.POLLNVAL


class PollPoller(Poller):
    name = 'poll'

    def __init__(self):
        Poller.__init__(self)
        self._poll = select.poll()

    def _apply(self, fd, old, new):
        if new is None:
            try:
                self._poll.unregister(fd)
            except KeyError:
                pass
            return
        self._poll.register(fd, (_IN if new[0] else 0) | (_OUT if new[1] else 0))

    def poll(self, timeout):
        events = self._poll.poll(None if timeout is None else int(timeout * 1000 + 0.999))
        return self._mask_results(events, _IN, _OUT, _HUP)

