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


def test_an_int_of_4300_digits_travels_with_its_sign():
    # Python 3.11+ turns 4300 digits into text, its sign aside; a sender refuses more.
    largest = 10 ** 4300 - 1
    assert codec.decode(codec.encode(-largest)) == -largest
    with pytest.raises(codec.CodecError, match="4300 digits"):
        codec.encode(-largest * 10)


def test_other_subclasses_of_plain_types_travel_as_the_plain_type():
    import collections
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    class Plain(tuple):
        pass

    assert type(codec.decode(codec.encode(Plain((1, 2))))) is tuple
    assert codec.decode(codec.encode(collections.OrderedDict(a=1))) == {"a": 1}
    assert codec.decode(codec.encode(Level.HIGH)) == 3


def test_named_tuples_and_struct_sequences_keep_their_fields():
    import collections
    import os
    import pwd
    import time

    point = codec.decode(codec.encode(collections.namedtuple("Point", "x y")(1, 2)))
    assert isinstance(point, tuple) and point == (1, 2) and (point.x, point.y) == (1, 2)
    row = collections.namedtuple("Row", ["id", "first name"], rename=True)(7, "ann")
    assert codec.decode(codec.encode(row))._1 == "ann"  # renamed fields start with _
    big = collections.namedtuple("Big", "data")(b"x" * 100000)
    assert len(codec.encode(big)) < 100100  # the items travel once, the names beside them
    assert len(codec.encode(codec.decode(codec.encode(big)))) < 100100
    stat = os.stat("/")
    decoded = codec.decode(codec.encode(stat))
    assert decoded == tuple(stat) and decoded[6] == stat.st_size
    assert (decoded.st_size, decoded.st_mode, decoded.st_mtime_ns) == (
        stat.st_size, stat.st_mode, stat.st_mtime_ns)  # st_mtime_ns is not in the tuple
    assert repr(decoded).startswith("os.stat_result(st_mode=")
    assert codec.decode(codec.encode(time.gmtime(0))).tm_year == 1970
    assert codec.decode(codec.encode(pwd.getpwnam("root"))).pw_dir == "/root"
    again = codec.decode(codec.encode(decoded))  # a Record travels on as one
    assert again == decoded and again.st_mtime_ns == stat.st_mtime_ns
    assert not hasattr(decoded, "st_nonexistent")


@pytest.mark.parametrize("parts", [
    ("os.stat_result", [1], {}),            # values not a tuple
    ("os.stat_result", (1,), [("a", 1)]),   # attributes not a dict
    ("os.stat_result", (1,), {1: 1}),       # a field name that is not text
    ("os.stat_result", (1,), {"__class__": 1}),  # nor a special name
    ("os.stat_result", (1,), {"_type_name": 1}),  # nor the Record's own
    ("Row", (1, 2), ("a",)),                # names that are not one per item
    ("Row", (1,), (2,)),                    # nor text
    (b"os.stat_result", (1,), {}),          # a type name that is not text
], ids=repr)
def test_malformed_records_are_refused(parts):
    data = b"r" + b"".join(codec.encode(part) for part in parts)
    with pytest.raises(codec.CodecError, match="bad record"):
        codec.decode(data)


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


@pytest.mark.parametrize("kind", ["set", "frozenset", "dict keys", "tuples in a set"])
def test_keys_made_to_share_one_hash_are_refused(kind):
    # Integers k * (2**61 - 1) + c share a hash, and tuples of them too: a set of n of
    # them takes n*n/2 comparisons to build (minutes for a few MB, with the GIL held).
    prime = 2 ** 61 - 1
    colliding = [k * prime + 7 for k in range(2000)]
    assert len({hash(n) for n in colliding}) == 1
    value = {"set": set(colliding), "frozenset": frozenset(colliding),
             "dict keys": dict.fromkeys(colliding, 0),
             "tuples in a set": {(n, "x") for n in colliding}}[kind]
    data = codec.encode(value)
    with pytest.raises(codec.CodecError, match="^malformed payload$"):
        codec.decode(data)


def test_many_keys_of_distinct_hashes_still_decode():
    value = {"ints": set(range(100_000)), "texts": {str(n): n for n in range(100_000)},
             "few alike": {-1, -2, 2 ** 61 - 1 + 7, 7}, "equal values": dict.fromkeys(range(500), 1)}
    assert codec.decode(codec.encode(value)) == value


def test_pickle_payload_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    with pytest.raises(codec.CodecError):
        codec.decode(pickle.dumps(Evil()))
    assert not marker.exists()
