"""kqueue, the BSD and macOS backend.

Unlike epoll, kqueue keys its registrations by (fd, filter): read interest
is an EVFILT_READ entry and write interest a separate EVFILT_WRITE entry,
added and deleted independently. Each result names one filter, so one test
per result is right here, and two results for one fd are merged into one
tuple. EV_EOF on a read filter is the hang-up and counts as readable.
"""
from __future__ import absolute_import

import select

from transport.core.poller import Poller


class KqueuePoller(Poller):
    name = 'kqueue'

    def __init__(self):
        Poller.__init__(self)
        self._kqueue = select.kqueue()

    def _apply(self, fd, old, new):
        old = old or (False, False)
        new = new or (False, False)
        changes = []
        for index, kfilter in ((0, select.KQ_FILTER_READ), (1, select.KQ_FILTER_WRITE)):
            if old[index] != new[index]:
                flags = select.KQ_EV_ADD if new[index] else select.KQ_EV_DELETE
                changes.append(select.kevent(fd, kfilter, flags))
        for change in changes:
            try:
                self._kqueue.control([change], 0, 0)
            except (OSError, IOError):
                if change.flags != select.KQ_EV_DELETE:
                    raise

    def poll(self, timeout):
        events = self._kqueue.control(None, 2 * max(1, len(self._interest)), timeout)
        merged = {}
        for event in events:
            fd = event.ident
            if fd not in self._interest:
                continue
            flags = merged.setdefault(fd, [False, False])
            if event.filter == select.KQ_FILTER_READ:
                flags[0] = True
            elif event.filter == select.KQ_FILTER_WRITE:
                flags[1] = True
        return [(fd, r, w) for fd, (r, w) in merged.items()]

    def close(self):
        Poller.close(self)
        self._kqueue.close()
