"""Forwarding a target's log records to its caller.

forward() attaches a handler to the target's root logger that sends each
record at or above `level` to the caller's handle as (level, logger name,
message), formatted on the target; the controller logs it under the same
level with the host's name (see Context.forward_logging).
"""
from __future__ import absolute_import

import logging

from transport.core import codec

# A record's text beyond this is cut (with a note of how much), so a record stays far
# below the message size limit (128 MiB unless a Router is given less than 1 MiB).
MAX_TEXT = 256 * 1024


class ForwardingHandler(logging.Handler):
    """Sends records to one handle of the context that asked for them."""

    def __init__(self, router, caller, handle, level):
        logging.Handler.__init__(self, level)
        self.router = router
        self.caller = caller
        self.target_handle = handle

    def emit(self, record):
        from transport.core.framing import Message
        try:
            text = self.format(record)
            if len(text) > MAX_TEXT:  # a message over the size limit would cut the connection
                text = text[:MAX_TEXT] + '... [%d characters more]' % (len(text) - MAX_TEXT)
            data = codec.encode((record.levelno, record.name, text))
            self.router.send(Message(self.caller, self.router.context_id, self.target_handle, data))
        except Exception:
            self.handleError(record)


def forward(handle, level):
    """Send this process's log records at or above level to handle; returns True."""
    from transport.core import dispatch
    root = logging.getLogger()
    for existing in [h for h in root.handlers if isinstance(h, ForwardingHandler)]:
        root.removeHandler(existing)
    handler = ForwardingHandler(dispatch.current.router, dispatch.current.caller, handle, level)
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    return True
