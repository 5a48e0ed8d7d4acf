"""The broker loop: work handed to it from other threads is never left waiting."""
import os
import socket
import threading
import time

import pytest

from transport.core.broker import Broker
from transport.core.framing import Decoder, Message
from transport.core.stream import Stream


@pytest.fixture
def broker():
    broker = Broker()
    broker.start()
    yield broker
    broker.shutdown()


def test_defer_from_another_thread_always_wakes_the_loop(broker):
    # A wake-up byte consumed by one pass must not leave a later defer() asleep:
    # each round waits for its own deferred call, many times over.
    ran = threading.Event()
    for round_number in range(20000):
        ran.clear()
        broker.defer(ran.set)
        assert ran.wait(5), f"deferred call {round_number} never ran"


def test_deferred_calls_from_many_threads_all_run(broker):
    count = [0]
    done = threading.Event()
    total = 4 * 5000

    def bump():
        count[0] += 1
        if count[0] == total:
            done.set()

    def producer():
        for _ in range(5000):
            broker.defer(bump)

    threads = [threading.Thread(target=producer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert done.wait(10), f"{total - count[0]} deferred calls never ran"


def test_defer_from_the_broker_thread_runs_after_the_current_call(broker):
    order = []
    done = threading.Event()

    def first():
        order.append("first")
        broker.defer(second)

    def second():
        order.append("second")
        done.set()

    broker.defer(first)
    assert done.wait(5)
    assert order == ["first", "second"]


# -- streams: how queued output reaches the peer ------------------------------------


class _Peer:
    """The far end of a socketpair, decoding what a Stream writes to it."""

    def __init__(self, sock):
        self.sock = sock
        self.decoder = Decoder()
        self.reads = 0

    def receive(self, count, timeout=5.0):
        self.sock.settimeout(timeout)
        messages = []
        while len(messages) < count:
            data = self.sock.recv(1 << 20)
            assert data, "stream closed early"
            self.reads += 1
            messages.extend(self.decoder.feed(data))
        return messages


@pytest.fixture
def stream_and_peer(broker):
    ours, theirs = socket.socketpair()
    stream = Stream(broker, ours.fileno(), ours.fileno(), "test", on_message=lambda msg: None,
                    on_disconnect=lambda stream, reason: None)
    broker.defer(stream.start)
    yield stream, _Peer(theirs)
    ours.close()
    theirs.close()


@pytest.mark.parametrize("options", [{"flush": True}, {"flush": False},
                                     {"flush": False, "linger": 0.001}],
                         ids=["now", "next-pass", "linger"])
def test_every_way_of_sending_delivers_all_in_order(stream_and_peer, options):
    stream, peer = stream_and_peer
    for number in range(3000):
        assert stream.send(Message(1, 0, 100, b"%d" % number), **options)
    messages = peer.receive(3000)
    assert [int(m.data) for m in messages] == list(range(3000))


def test_a_lone_unflushed_message_still_goes_out(stream_and_peer):
    # Nothing follows it: the broker's own pass (or the linger timer) must write it.
    stream, peer = stream_and_peer
    stream.send(Message(1, 0, 100, b"alone"), flush=False, linger=0.001)
    assert [m.data for m in peer.receive(1)] == [b"alone"]
    stream.send(Message(1, 0, 100, b"alone again"), flush=False)
    assert [m.data for m in peer.receive(1)] == [b"alone again"]


def test_unflushed_messages_are_written_together(stream_and_peer, monkeypatch):
    stream, peer = stream_and_peer
    writes = []
    real_write = os.write

    def counting_write(fd, data):
        if fd == stream.wfd:
            writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr("transport.core.stream.os.write", counting_write)
    for _ in range(500):  # a linger that outlasts the test: only the last send writes
        stream.send(Message(1, 0, 100, b"x" * 50), flush=False, linger=60)
    stream.send(Message(1, 0, 100, b"last"))
    messages = peer.receive(501)
    assert messages[-1].data == b"last"
    assert len(writes) <= 2, f"{len(writes)} writes for 501 small messages"


def test_core_event_wakes_every_waiter_once_set():
    from transport.core.compat import Event

    event = Event()
    assert not event.is_set()
    assert event.wait(0.05) is False  # times out while unset
    woken = []
    waiters = [threading.Thread(target=lambda: woken.append(event.wait(10))) for _ in range(5)]
    for waiter in waiters:
        waiter.start()
    event.set()
    event.set()  # a second set() changes nothing
    for waiter in waiters:
        waiter.join(10)
    assert woken == [True] * 5
    assert event.is_set() and event.wait(0) and event.wait()


def test_broker_shutdown_waits_for_its_loop_to_end():
    broker = Broker()
    broker.start()
    assert not broker.in_broker_thread()
    on_loop = []
    done = threading.Event()
    broker.defer(lambda: (on_loop.append(broker.in_broker_thread()), done.set()))
    assert done.wait(5) and on_loop == [True]
    ended = []
    broker.add_shutdown_hook(lambda: (time.sleep(0.2), ended.append(True)))
    broker.shutdown()
    assert ended == [True]  # shutdown() returned only after the loop's last hook


def test_a_peer_that_wrote_its_last_messages_and_left_is_read_to_the_end(broker):
    # Two pipes, as to a child process. The peer writes two messages and exits (both
    # its ends close); our write then fails with EPIPE, but the messages it left in
    # the pipe must still be delivered before the stream reports the end.
    their_read, our_write = os.pipe()
    our_read, their_write = os.pipe()
    received, ended = [], threading.Event()
    stream = Stream(broker, our_read, our_write, "peer", lambda msg: received.append(msg.data),
                    lambda s, reason: ended.set())
    os.write(their_write, Message(1, 2, 100, b"last words").pack()
             + Message(1, 2, 100, b"goodbye").pack())
    os.close(their_write)
    os.close(their_read)
    stream.send(Message(2, 1, 100, b"x" * 100000))  # EPIPE, in the same pass as the reads
    broker.defer(stream.start)
    assert ended.wait(10)
    assert received == [b"last words", b"goodbye"]
