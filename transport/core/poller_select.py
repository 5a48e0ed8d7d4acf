"""select(2), the last resort: every platform has it, but only for fds below FD_SETSIZE.

select() takes separate read and write sets, so an fd is in each set its
interest asks for and its results are merged back into one tuple per fd.
An fd at end of file or in error shows up as readable, as select reports it.
"""
from __future__ import absolute_import

import select

from transport.core.poller import Poller


class SelectPoller(Poller):
    name = 'select'

    def _apply(self, fd, old, new):
        pass  # the sets are built from self._interest on every poll

    def poll(self, timeout):
        interest = self._interest
        readers = [fd for fd, (r, w) in interest.items() if r]
        writers = [fd for fd, (r, w) in interest.items() if w]
        readable, writable, _ = select.select(readers, writers, [], timeout)
        merged = {}
        for fd in readable:
            merged[fd] = [True, False]
        for fd in writable:
            merged.setdefault(fd, [False, False])[1] = True
        return [(fd, r, w) for fd, (r, w) in merged.items()]
