"""The router's security rules, with real brokers and streams over socketpairs.

A "controller" router (context 0) and a "target" router (context 1) are joined
by a socketpair; a third socket plays a rogue child writing raw frames.
"""

from __future__ import annotations

import socket
import threading

import pytest

from transport.core import codec
from transport.core.broker import Broker
from transport.core.framing import Message
from transport.core.handles import ADD_ROUTE, CALL_FUNCTION, DEL_ROUTE
from transport.core.router import Router
from transport.core.stream import Stream


class Node:
    """A router on its own broker thread, recording drops and lost contexts."""

    def __init__(self, context_id: int) -> None:
        self.broker = Broker(name=f"node-{context_id}")
        self.drops: list[tuple[Message, str]] = []
        self.lost: list[tuple[int, str]] = []
        self.router = Router(self.broker, context_id, on_drop=lambda m, r: self.drops.append((m, r)))
        self.router.on_context_lost.append(lambda cid, reason: self.lost.append((cid, reason)))
        self.broker.start()

    def stream(self, sock: socket.socket, name: str) -> Stream:
        fd = sock.detach()
        stream = Stream(self.broker, fd, fd, name, self.router.on_message,
                        lambda s, reason: self.router.stream_disconnected(s, reason))
        self.run(stream.start)
        return stream

    def run(self, fn, *args):
        done = threading.Event()

        def task():
            try:
                fn(*args)
            finally:
                done.set()

        self.broker.defer(task)
        assert done.wait(5)

    def close(self) -> None:
        self.broker.shutdown()


@pytest.fixture
def controller():
    node = Node(0)
    yield node
    node.close()


def _settle(node: Node) -> None:
    # Two passes of the loop: whatever was readable has been handled.
    node.run(lambda: None)
    node.run(lambda: None)


def test_source_not_behind_the_stream_is_dropped(controller):
    ours, theirs = socket.socketpair()
    stream = controller.stream(ours, "child-1")
    controller.router.add_route(1, stream)
    got = []
    controller.router.add_handler(5000, got.append, accept=lambda r, h, m: True)
    # The child claims to be context 7, which is not routed through it.
    theirs.sendall(Message(0, 7, 5000, b"spoofed").pack())
    theirs.sendall(Message(0, 1, 5000, b"genuine").pack())
    _settle(controller)
    assert [m.data for m in got] == [b"genuine"]
    assert any("source 7" in reason for _, reason in controller.drops)


def test_a_child_cannot_reach_a_sibling(controller):
    a_ours, a_theirs = socket.socketpair()
    b_ours, b_theirs = socket.socketpair()
    controller.router.add_route(1, controller.stream(a_ours, "child-1"))
    controller.router.add_route(2, controller.stream(b_ours, "child-2"))
    a_theirs.sendall(Message(2, 1, CALL_FUNCTION, codec.encode(("os", "system", ("id",), {}))).pack())
    _settle(controller)
    b_theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        b_theirs.recv(100)
    assert any("may not address another context" in reason for _, reason in controller.drops)


def test_calls_are_accepted_only_from_the_parent_side():
    target = Node(1)
    try:
        parent_ours, parent_theirs = socket.socketpair()
        child_ours, child_theirs = socket.socketpair()
        target.router.set_parent(target.stream(parent_ours, "parent"), 0)
        target.router.add_route(2, target.stream(child_ours, "child-2"))
        calls = []
        target.router.add_handler(CALL_FUNCTION, calls.append)
        child_theirs.sendall(Message(1, 2, CALL_FUNCTION, b"from child").pack())
        parent_theirs.sendall(Message(1, 0, CALL_FUNCTION, b"from parent").pack())
        _settle(target)
        assert [m.data for m in calls] == [b"from parent"]
        assert any("refuses" in reason for _, reason in target.drops)
    finally:
        target.close()


def test_add_route_from_a_child_is_ignored():
    target = Node(1)
    try:
        parent_ours, _parent_theirs = socket.socketpair()
        child_ours, child_theirs = socket.socketpair()
        target.router.set_parent(target.stream(parent_ours, "parent"), 0)
        child = target.stream(child_ours, "child-2")
        target.router.add_route(2, child)
        # Context 2 tries to claim that context 0 (the controller) lives behind it.
        child_theirs.sendall(Message(1, 2, ADD_ROUTE, codec.encode((0, 2))).pack())
        _settle(target)
        assert target.router.route_for(0) is None
    finally:
        target.close()


def test_del_route_only_for_contexts_behind_the_sender(controller):
    a_ours, a_theirs = socket.socketpair()
    b_ours, _b_theirs = socket.socketpair()
    a = controller.stream(a_ours, "child-1")
    b = controller.stream(b_ours, "child-2")
    controller.router.add_route(1, a)
    controller.router.add_route(2, b)
    a_theirs.sendall(Message(0, 1, DEL_ROUTE, codec.encode(([2], "lies"))).pack())
    _settle(controller)
    assert controller.router.route_for(2) is b
    assert controller.lost == []


def test_del_route_reports_each_context_once(controller):
    ours, theirs = socket.socketpair()
    controller.router.add_child(1, controller.stream(ours, "child-1"))
    # One id many times over: each report would be a DEL_ROUTE upward, a log line, a
    # wake-up of every caller waiting on it.
    data = Message(0, 1, DEL_ROUTE, codec.encode(([1] * 100_000, "gone"))).pack()
    sender = threading.Thread(target=theirs.sendall, args=(data,), daemon=True)
    sender.start()
    sender.join(30)
    _settle(controller)
    assert controller.lost == [(1, "gone")]


def test_pending_replies_fail_when_the_child_disconnects(controller):
    ours, theirs = socket.socketpair()
    controller.router.add_route(1, controller.stream(ours, "child-1"))
    replies = []
    handle = controller.router.add_reply_handler(replies.append, 1)
    controller.router.send(Message(1, 0, CALL_FUNCTION, b"", reply_to=handle))
    theirs.close()
    _settle(controller)
    assert len(replies) == 1 and replies[0].is_dead
    assert controller.lost and controller.lost[0][0] == 1


def test_a_reply_from_another_context_is_refused(controller):
    a_ours, _a_theirs = socket.socketpair()
    b_ours, b_theirs = socket.socketpair()
    controller.router.add_route(1, controller.stream(a_ours, "child-1"))
    controller.router.add_route(2, controller.stream(b_ours, "child-2"))
    replies = []
    handle = controller.router.add_reply_handler(replies.append, 1)
    b_theirs.sendall(Message(0, 2, handle, codec.encode(("ok", "forged"))).pack())
    _settle(controller)
    assert replies == []


def test_a_malformed_stream_disconnects_only_that_child(controller):
    a_ours, a_theirs = socket.socketpair()
    b_ours, _b_theirs = socket.socketpair()
    controller.router.add_route(1, controller.stream(a_ours, "child-1"))
    b = controller.stream(b_ours, "child-2")
    controller.router.add_route(2, b)
    a_theirs.sendall(b"\x80\x04garbage that is not a frame at all")
    _settle(controller)
    assert [cid for cid, _ in controller.lost] == [1]
    assert "protocol error" in controller.lost[0][1]
    assert controller.router.route_for(2) is b
