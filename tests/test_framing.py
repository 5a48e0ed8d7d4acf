"""Framing and the boot handshake, fed plain bytes (no sockets)."""

import pytest

from transport.core.framing import HEADER_SIZE, Decoder, Message, ProtocolError
from transport.core.handles import FLAG_DEAD
from transport.core.handshake import READY_MARKER, BootScanner


def test_message_round_trip_in_one_piece():
    msg = Message(3, 0, 2, b"payload", reply_to=1001, flags=FLAG_DEAD)
    [got] = Decoder().feed(msg.pack())
    assert (got.dst, got.src, got.handle, got.reply_to, got.flags, got.data) == (
        3, 0, 2, 1001, FLAG_DEAD, b"payload")
    assert got.is_dead


def test_byte_at_a_time_and_several_per_chunk():
    data = b"".join(Message(1, 2, 3, bytes([i]) * i).pack() for i in range(5))
    decoder = Decoder()
    got = []
    for i in range(len(data)):
        got += decoder.feed(data[i:i + 1])
    assert [m.data for m in got] == [bytes([i]) * i for i in range(5)]
    assert decoder.pending() == 0
    assert [m.data for m in Decoder().feed(data)] == [m.data for m in got]


def test_incomplete_message_is_held():
    packed = Message(1, 2, 3, b"abcdef").pack()
    decoder = Decoder()
    assert decoder.feed(packed[:-1]) == []
    assert decoder.pending() == len(packed) - 1
    [msg] = decoder.feed(packed[-1:])
    assert msg.data == b"abcdef"


def test_bad_magic_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="magic"):
        Decoder().feed(b"x" * HEADER_SIZE)


def test_oversized_message_is_refused_from_its_header():
    decoder = Decoder(max_message_size=10)
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed(Message(1, 2, 3, b"x" * 11).header())


def test_scanner_skips_banner_text_and_returns_what_follows():
    scanner = BootScanner()
    assert scanner.feed(b"Welcome to host\n") == b""
    assert scanner.state == "waiting"
    rest = scanner.feed(READY_MARKER[:4])
    assert rest == b"" and scanner.state == "waiting"
    rest = scanner.feed(READY_MARKER[4:] + b"framed")
    assert scanner.state == "ready"
    assert rest == b"framed"
    assert scanner.preamble_text() == "Welcome to host"


def test_scanner_reports_unsupported_interpreter():
    scanner = BootScanner()
    scanner.feed(b"\ntp-unsupported-python 3.4.10\n")
    assert scanner.state == "unsupported"
    assert scanner.found_version == "3.4.10"
