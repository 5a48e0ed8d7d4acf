"""Module forwarding on an intermediary: serving its children from the cache.

A target that starts children (spawn.start_child) has its ModuleForwarder
answer them too: a child's GET_MODULE is answered from the cache, or joins
the wait for the parent's answer (the parent is asked once per name, however
many children wait), and FORWARD_MODULE from the parent (modules it sends a
child unasked) is cached here and passed on as LOAD_MODULE. A leaf target
never needs this, so it is not in the boot payload: the controller sends it
with spawn.
"""
from __future__ import absolute_import

import zlib

from transport.core import codec, forwarding
from transport.core.compat import text_type
from transport.core.framing import Message
from transport.core.handles import FORWARD_MODULE, GET_MODULE, LOAD_MODULE
from transport.core.router import accept_from_anyone

# A request for a longer or malformed name is answered as missing, unrecorded; one from
# a context with more than ANSWER_BACKLOG bytes unread is not answered (it is not reading:
# an intermediary drops it, the controller holds it). Both bounds serve the controller too.
MAX_NAME = 512
ANSWER_BACKLOG = 32 * 1024 * 1024


def valid_module_name(fullname):
    """A dotted module name of identifier-like parts, not too long (checked without re)."""
    if not isinstance(fullname, (str, text_type)) or not 0 < len(fullname) <= MAX_NAME:
        return False
    for part in fullname.split('.'):
        if not part or part[0].isdigit() or not all(c.isalnum() or c == '_' for c in part):
            return False
    return True


def pack_entries(entries):
    """A module list (see docs/protocol.md): entries as zlib-compressed codec data.
    Byte code compresses poorly: a list carrying some is compressed at level 1, which
    here comes within 10% of level 6's size in under half its time (jinja2's)."""
    entries = list(entries)
    return zlib.compress(codec.encode(entries), 1 if any(len(e) > 4 for e in entries) else 6)


def serve_children(router):
    """Have this process's module forwarder answer the children of router (again: the
    handlers are replaced by equal ones)."""
    forwarder = forwarding.installed
    router.add_handler(FORWARD_MODULE, lambda msg: _on_forward(forwarder, msg))
    router.add_handler(GET_MODULE, lambda msg: _on_child_request(forwarder, msg),
                       accept=accept_from_anyone)


def _on_forward(forwarder, msg):
    target_id, data = codec.decode(msg.data)
    forwarder.add(forwarding.unpack_entries(data))
    forwarder.router.send(Message(target_id, forwarder.router.context_id, LOAD_MODULE, data))


def _on_child_request(forwarder, msg):
    fullname = codec.decode(msg.data)
    router = forwarder.router
    own_id = router.context_id

    def reply(entries):
        router.send(Message(msg.src, own_id, msg.reply_to, pack_entries(entries)))

    if not valid_module_name(fullname):
        reply([(('%s' % (fullname,))[:200], 'missing', None, None)])
        return
    if msg.stream is not None and msg.stream.queued() > ANSWER_BACKLOG:
        return
    entry = forwarder.entries.get(fullname)
    if entry is not None:
        reply(forwarder.groups.get(fullname) or [entry])
    elif not forwarder.can_ask():
        reply([(fullname, 'missing', None, None)])
    else:
        forwarder.request(fullname).child_replies.append(reply)
