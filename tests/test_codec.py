"""The payload codec: round trips, and refusal of anything but plain data."""

import pickle

import pytest

from transport.core import codec

VALUES = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64, -(2**200), 1.5, float("inf"),
    b"", b"\x00\xff", "", "h\u00e9llo \u2603", "\udcff surrogate-escaped byte",
    (), (1, "a"), [], [1, [2, [3]]], {}, {"a": 1, 2: b"b", (1, 2): None},
    set(), {1, 2}, frozenset({"x"}), bytearray(b"xy"),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_round_trip(value):
    decoded = codec.decode(codec.encode(value))
    expected = bytes(value) if isinstance(value, bytearray) else value
    assert decoded == expected
    assert type(decoded) is type(expected)


def test_subclasses_of_plain_types_travel_as_the_plain_type():
    import collections
    import enum
    import os

    Point = collections.namedtuple("Point", "x y")

    class Level(enum.IntEnum):
        HIGH = 3

    assert codec.decode(codec.encode(Point(1, 2))) == (1, 2)
    assert type(codec.decode(codec.encode(Point(1, 2)))) is tuple
    assert codec.decode(codec.encode(collections.OrderedDict(a=1))) == {"a": 1}
    assert codec.decode(codec.encode(Level.HIGH)) == 3
    assert codec.decode(codec.encode(os.stat("/")))[0] == os.stat("/").st_mode


def test_bool_stays_bool_and_int_stays_int():
    assert codec.decode(codec.encode([True, 1])) == [True, 1]
    assert [type(v) for v in codec.decode(codec.encode([True, 1]))] == [bool, int]


@pytest.mark.parametrize("value", [object(), pytest, lambda: 1, Exception("x"), 1j])
def test_refuses_other_types(value):
    with pytest.raises(codec.CodecError, match="cannot encode"):
        codec.encode(value)


def test_refuses_deep_nesting():
    value = []
    for _ in range(codec.MAX_DEPTH + 5):
        value = [value]
    with pytest.raises(codec.CodecError, match="nested"):
        codec.encode(value)


@pytest.mark.parametrize("data", [
    b"", b"X", b"i\x00", b"s\x00\x00\x00\x05ab", b"l\xff\xff\xff\xff", b"NN",
    b"d\x00\x00\x00\x01l\x00\x00\x00\x00N",   # unhashable key
    b"I\x00\x00\x00\x02zz",
    pickle.dumps(("x",)),
])
def test_malformed_input_is_a_codec_error(data):
    with pytest.raises(codec.CodecError):
        codec.decode(data)


def test_deeply_nested_input_is_refused():
    data = b"l\x00\x00\x00\x01" * (codec.MAX_DEPTH + 5) + b"N"
    with pytest.raises(codec.CodecError, match="nested"):
        codec.decode(data)


def test_pickle_payload_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    with pytest.raises(codec.CodecError):
        codec.decode(pickle.dumps(Evil()))
    assert not marker.exists()
