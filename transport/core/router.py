"""Delivery and routing of messages between contexts.

Every process has one Router: a context id, at most one parent stream, and
a table of the contexts reachable through each child stream. The routing
rules are the security boundary of the system:

- A message from a child must carry a source that is routed through that
  child; anything else is dropped.
- A message from a child is delivered here or passed up to the parent,
  never down to another child, so a compromised target cannot reach its
  siblings. The controller, which has no parent, delivers it locally only.
- Messages from the parent are delivered here or relayed down the table.
- Each handler states whose messages it accepts (see the accept_* policies);
  only the parent side may run code. A context may report only the loss of
  contexts behind itself (DEL_ROUTE), and a notice that a context is gone
  (FLAG_DEAD) counts only from this process, the parent side, that context
  or an intermediary on the way to it: no context can cut off a sibling.
- A handler that raises is reported (Broker.on_error) and the messages after
  it are still delivered.

When a child stream disconnects, every context routed through it is lost:
pending replies from those contexts fail at once and the loss is reported
upwards with DEL_ROUTE.

A process forked from this one (os.fork or multiprocessing in a call, a
detached job) inherits the router but not its connections: it shares their
file descriptors with this process and has no broker thread. There send()
sends nothing (see forked()), so a fork can never corrupt a stream.
"""
from __future__ import absolute_import

import itertools
import os
import sys

from transport.core import codec
from transport.core.compat import allocate_lock, integer_types, text_type
from transport.core.framing import NO_REPLY, Message
from transport.core.handles import ADD_ROUTE, DEL_ROUTE, FIRST_DYNAMIC_HANDLE, FLAG_DEAD, SHUTDOWN

# The reason given for a message whose destination has no route (is gone or never was).
NO_ROUTE = 'no route to context'
NO_HANDLER = 'no handler'  # and for one whose handle has no handler here (any more)


def accept_from_parent(router, handler, msg):
    """The parent side (or this process itself) sent msg."""
    return msg.stream is None or msg.stream is router.parent


def accept_from_anyone(router, handler, msg):
    """Any context whose source checked out at the router's ingress."""
    return True


def accept_from_child(router, handler, msg):
    """The child on the stream msg came in on, itself (not a context behind it)."""
    return msg.stream is not None and router.child_on(msg.stream) == msg.src


def _dead_notice_about(router, context_id, msg):
    """Whether dead notice msg may speak for context_id: it comes from this process,
    the parent side, that context, or an intermediary on the way to it."""
    return (msg.stream is None or msg.stream is router.parent or msg.src == context_id
            or msg.src in router.hops_to(context_id))


def accept_from_context(context_id):
    """A policy admitting messages from context_id only (and dead notices about it)."""
    def accept(router, handler, msg):
        if msg.is_dead:
            return _dead_notice_about(router, context_id, msg)
        return msg.src == context_id
    return accept


def accept_reply(router, handler, msg):
    """The context the request went to, or a dead notice about it."""
    if msg.is_dead:
        return _dead_notice_about(router, handler.expect_src, msg)
    return msg.src == handler.expect_src


class Handler(object):
    __slots__ = ('fn', 'accept', 'expect_src', 'persist')

    def __init__(self, fn, accept, expect_src, persist):
        self.fn = fn
        self.accept = accept
        self.expect_src = expect_src
        self.persist = persist


class Router(object):
    """Routes messages for one context; all routing runs on the broker thread."""

    def __init__(self, broker, context_id, on_drop=None):
        self.broker = broker
        self.context_id = context_id
        self.pid = os.getpid()
        self.parent = None
        self.parent_id = None
        self.on_drop = on_drop
        self.on_context_lost = []
        self._routes = {}
        self._children = {}  # stream -> the id of the child at its other end
        self._hops = {}  # context id -> ids of the intermediaries on the way to it
        # The contexts a SHUTDOWN went down to (through here, or from here: the sender
        # adds them), until they are lost: their end needs no explaining.
        self.exiting = set()
        self._handlers = {}
        self._watching = {}
        self._lock = allocate_lock()
        self._handle_ids = itertools.count(FIRST_DYNAMIC_HANDLE)
        self.add_handler(ADD_ROUTE, self._on_add_route, accept=accept_from_parent)
        self.add_handler(DEL_ROUTE, self._on_del_route, accept=accept_from_child)

    # -- handlers --------------------------------------------------------------

    def add_handler(self, handle, fn, accept=accept_from_parent, persist=True, expect_src=None):
        """Call fn(msg) on the broker thread for messages to handle that accept() admits."""
        with self._lock:
            self._handlers[handle] = Handler(fn, accept, expect_src, persist)
            if expect_src is not None:
                watching = self._watching.get(expect_src)
                if watching is None:
                    watching = self._watching[expect_src] = set()
                watching.add(handle)
        return handle

    def add_reply_handler(self, fn, expect_src):
        """Allocate a one-shot handle for a reply from context expect_src.

        fn(msg) gets the reply, or a dead message if that context is lost or
        unreachable. Returns the handle to put in reply_to.
        """
        return self.add_handler(next(self._handle_ids), fn, accept=accept_reply,
                                persist=False, expect_src=expect_src)

    def add_stream_handler(self, fn, from_context):
        """Allocate a handle for many messages from context from_context (until removed).

        fn(msg) gets each, or a dead message if that context is lost.
        """
        return self.add_handler(next(self._handle_ids), fn, accept=accept_from_context(from_context),
                                expect_src=from_context)

    def add_parent_handler(self, fn):
        """Allocate a handle for messages from the parent side only (until removed)."""
        return self.add_handler(next(self._handle_ids), fn, accept=accept_from_parent)

    def remove_handler(self, handle):
        with self._lock:
            handler = self._handlers.pop(handle, None)
            if handler is not None and handler.expect_src is not None:
                watching = self._watching.get(handler.expect_src)
                if watching:
                    watching.discard(handle)
        return handler

    # -- routes ------------------------------------------------------------------

    def set_parent(self, stream, parent_id):
        self.parent = stream
        self.parent_id = parent_id

    def add_route(self, context_id, stream):
        """Messages for context_id go out on stream (a child stream)."""
        self._routes[context_id] = stream

    def add_child(self, context_id, stream):
        """context_id is the child at the other end of stream (and routed through it)."""
        self._children[stream] = context_id
        self._routes[context_id] = stream

    def child_on(self, stream):
        return self._children.get(stream)

    def set_hops(self, context_id, hop_ids):
        """The intermediaries on the way to context_id (the controller knows them)."""
        self._hops[context_id] = frozenset(hop_ids)

    def hops_to(self, context_id):
        return self._hops.get(context_id, ())

    def remove_route(self, context_id):
        self._routes.pop(context_id, None)
        self._hops.pop(context_id, None)

    def route_for(self, context_id, default=None):
        return self._routes.get(context_id, default)

    def _on_add_route(self, msg):
        context_id, via_id = codec.decode(msg.data)
        stream = self._routes.get(via_id)
        if stream is not None:
            self._routes[context_id] = stream

    def _on_del_route(self, msg):
        context_ids, reason = codec.decode(msg.data)
        if not isinstance(reason, text_type):
            reason = repr(reason)
        # Each once: one id many times over would be as many losses to report. In the
        # order of their ids: an intermediary (started first) before those behind it.
        self._lose(sorted(set(cid for cid in context_ids if isinstance(cid, integer_types)
                              and self._routes.get(cid) is msg.stream)), reason)

    def disconnect_children(self, reason):
        """Close every child stream (broker thread): the contexts behind them are lost."""
        for stream in set(self._routes.values()) | set(self._children):
            stream.disconnect(reason)

    def stream_disconnected(self, stream, reason):
        """A child stream closed: every context behind it is lost."""
        self._children.pop(stream, None)
        self._lose(sorted(cid for cid, s in list(self._routes.items()) if s is stream), reason)

    def _lose(self, context_ids, reason):
        if not context_ids:
            return
        for cid in context_ids:
            self._routes.pop(cid, None)
            self._hops.pop(cid, None)
            self.exiting.discard(cid)
        if self.parent is not None:
            self.send(Message(self.parent_id, self.context_id, DEL_ROUTE,
                              codec.encode((context_ids, reason))))
        for cid in context_ids:
            self._fail_watchers(cid, reason)
            for callback in self.on_context_lost:
                callback(cid, reason)

    def _fail_watchers(self, context_id, reason):
        with self._lock:
            handles = self._watching.pop(context_id, ())
        for handle in handles:
            handler = self.remove_handler(handle)
            if handler is not None:
                dead = Message(self.context_id, context_id, handle,
                               reason.encode('utf-8', 'replace'), flags=FLAG_DEAD)
                handler.fn(dead)

    # -- moving messages ---------------------------------------------------------

    def forked(self):
        """Whether this is a process forked from the router's own, which must not use it."""
        return os.getpid() != self.pid

    def send(self, msg, flush=True, linger=0):
        """Send a message that originates here; safe from any thread.

        flush=False when more messages follow at once (see Stream.send). In a
        forked process it sends nothing.
        """
        if self.forked():
            return
        if msg.dst == self.context_id:
            self.broker.call_soon_or_now(self._deliver, msg)
            return
        stream = self._routes.get(msg.dst) or self.parent
        if stream is None or not stream.send(msg, flush, linger):
            self.broker.call_soon_or_now(self._unroutable, msg, NO_ROUTE + ' %d' % msg.dst)

    def on_message(self, msg):
        """A stream received msg (broker thread).

        Messages passed on to another stream are queued without a write each:
        the broker writes them together at the end of this pass.
        """
        stream = msg.stream
        if stream is self.parent:
            if msg.dst == self.context_id:
                self._deliver(msg)
                return
            child = self._routes.get(msg.dst)
            if msg.handle == SHUTDOWN:
                self.exiting.add(msg.dst)
            if child is None or not child.send(msg, False):
                self._unroutable(msg, NO_ROUTE + ' %d' % msg.dst)
            return
        if self._routes.get(msg.src) is not stream:
            self._drop(msg, 'source %d is not behind %r' % (msg.src, stream))
            return
        if msg.dst == self.context_id:
            self._deliver(msg)
        elif self.parent is not None:
            if not self.parent.send(msg, False):
                self._unroutable(msg, 'parent connection is gone')
        else:
            self._drop(msg, 'a context may not address another context')

    def _deliver(self, msg):
        handler = self._handlers.get(msg.handle)
        if handler is None:
            if not msg.is_dead:
                self._unroutable(msg, NO_HANDLER + ' %d' % msg.handle)
            return
        if not handler.accept(self, handler, msg):
            self._drop(msg, 'handler %d refuses it' % msg.handle)
            return
        if not handler.persist:
            self.remove_handler(msg.handle)
        try:
            handler.fn(msg)
        except BaseException:
            self.broker.on_error(msg, sys.exc_info())  # what its handler failed on

    def _unroutable(self, msg, reason):
        """Tell the sender's reply handle that its message went nowhere."""
        if msg.reply_to != NO_REPLY and not msg.is_dead:
            dead = Message(msg.src, self.context_id, msg.reply_to,
                           reason.encode('utf-8'), flags=FLAG_DEAD)
            if msg.src == self.context_id:
                self._deliver(dead)
            else:
                self.send(dead)
        else:
            self._drop(msg, reason)

    def _drop(self, msg, reason):
        if self.on_drop is not None:
            self.on_drop(msg, reason)
