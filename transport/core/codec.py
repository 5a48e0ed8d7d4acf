"""Safe encoding of the values that travel in message payloads.

A small tagged binary format for None, booleans, integers, floats, bytes,
text, lists, tuples, dicts, sets and frozensets, nothing else; a named tuple
or a struct sequence (os.stat_result, time.struct_time, pwd.struct_passwd)
arrives as a Record, a tuple that also has its fields as attributes. Decoding
builds only those types and never looks up or calls anything named by the
data, so a message from a compromised target cannot run code on the
controller. Sizes are bounded by the message, and nesting by MAX_DEPTH.

Strings cross Python 2 and 3: text is tagged 's' and arrives as text
(unicode on 2.7, or there a native str when its bytes are not UTF-8); a
Python 2 native str is tagged 'n' and arrives as the receiver's native str.
"""
from __future__ import absolute_import

import struct

from transport.core.compat import PY2, integer_types, text_type

MAX_DEPTH = 100
MAX_DIGITS = 4300  # in an integer's decimal text: what Python 3.11+ converts by default

_I64 = struct.Struct('>q')
_F64 = struct.Struct('>d')
_U32 = struct.Struct('>I')


class CodecError(Exception):
    """The value cannot be encoded, or the bytes are not a valid encoding."""


class Record(tuple):
    """A named tuple or struct sequence as it arrives: the tuple it was, with its fields
    as attributes (os.stat_result's st_size, and its fields outside the tuple, such as
    st_mtime_ns); the name of its type is only shown, never looked up."""

    def __new__(cls, values=(), fields=None, type_name='record'):
        self = tuple.__new__(cls, values)
        self.__dict__.update(fields or {})  # no name of theirs starts with __ (see _decode)
        self._type_name = type_name
        return self

    def __repr__(self):
        return '%s(%s)' % (self._type_name, ', '.join(
            '%s=%r' % item for item in _named_fields(self).items()))


if PY2:
    _NATIVE_TAG = b'n'

    def _decode_text(data):
        try:
            return data.decode('utf-8')
        except UnicodeDecodeError:  # no surrogateescape on 2.7: the bytes, as a native str
            return data

    def _decode_native(data):
        return data
else:
    _NATIVE_TAG = b's'

    def _decode_text(data):
        return data.decode('utf-8', 'surrogateescape')

    _decode_native = _decode_text


def _text_bytes(value):
    if PY2:
        return value.encode('utf-8')
    return value.encode('utf-8', 'surrogateescape')


def encode(value):
    """Return the bytes that encode value; raise CodecError for other types."""
    out = []
    try:
        _encode(value, out.append, 0)
    except Exception as e:  # a lone surrogate, an int str() refuses (3.11+), a dict changing
        raise CodecError(e)
    return b''.join(out)


def _encode(value, put, depth):
    if depth > MAX_DEPTH:
        raise CodecError('value nested more than %d deep' % MAX_DEPTH)
    kind = type(value)
    if value is None:
        put(b'N')
    elif value is True:
        put(b'T')
    elif value is False:
        put(b'F')
    elif kind is bytes:
        put(_NATIVE_TAG if PY2 else b'b')
        put(_U32.pack(len(value)))
        put(value)
    elif kind is text_type:
        data = _text_bytes(value)
        put(b's')
        put(_U32.pack(len(data)))
        put(data)
    elif isinstance(value, integer_types):  # (bools are True or False, above)
        value = int(value)
        if -1 << 63 <= value < 1 << 63:
            put(b'i')
            put(_I64.pack(value))
        else:
            digits = str(value).encode('ascii')
            if len(digits.lstrip(b'-')) > MAX_DIGITS:  # as 3.11+ would refuse it
                raise CodecError('an integer of more than %d digits' % MAX_DIGITS)
            put(b'I')
            put(_U32.pack(len(digits)))
            put(digits)
    elif kind is float:
        put(b'f')
        put(_F64.pack(value))
    elif kind is tuple or kind is list or kind is set or kind is frozenset:
        put(_SEQUENCE_TAGS[kind])
        put(_U32.pack(len(value)))
        for item in value:
            _encode(item, put, depth + 1)
    elif isinstance(value, dict):  # an OrderedDict's order too (on 2.7, dict() loses it)
        put(b'd')
        put(_U32.pack(len(value)))
        for key in value:
            _encode(key, put, depth + 1)
            _encode(value[key], put, depth + 1)
    elif kind is bytearray:
        put(b'b')
        put(_U32.pack(len(value)))
        put(bytes(value))
    else:
        fields = _named_fields(value)  # (on 2.7 a struct sequence is no tuple)
        if fields is not None:
            put(b'r')
            name = value._type_name if kind is Record else '%s.%s' % (kind.__module__,
                                                                       kind.__name__)
            _encode(text_type(name), put, depth + 1)
            _encode(tuple(value), put, depth + 1)
            names = getattr(kind, '_fields', None)  # a named tuple's fields are its items:
            if type(names) is tuple and len(names) == len(value):  # names will do, in order
                fields = tuple(map(text_type, names))  # (a 2.7 dict has none)
            elif len(fields) == len(value) and all(
                    a is b for a, b in zip(fields.values(), value)):
                fields = tuple(fields)
            _encode(fields, put, depth + 1)
            return
        # Other subclasses of plain types (OrderedDict, IntEnum members ...) travel as
        # their plain base type.
        for base in _PLAIN_BASES:
            if isinstance(value, base):  # str() of a (str, Enum) member is its name: its text
                _encode(base.__getitem__(value, slice(None)) if base in (bytes, text_type)
                        else base(value), put, depth)
                return
        raise CodecError('cannot encode a value of type %s.%s' % (kind.__module__, kind.__name__))


_SEQUENCE_TAGS = {tuple: b't', list: b'l', set: b'e', frozenset: b'z'}


def _named_fields(value):
    """{field name: value} of a Record, named tuple or struct sequence, else None."""
    kind = type(value)
    if kind is Record:
        return dict(item for item in vars(value).items() if item[0] != '_type_name')
    fields = getattr(kind, '_fields', None)
    if (isinstance(value, tuple) and isinstance(fields, tuple)
            and all(isinstance(f, str) for f in fields)):  # a namedtuple
        return dict((text_type(f), getattr(value, f)) for f in fields)
    if hasattr(kind, 'n_sequence_fields'):  # a struct sequence: its fields are members
        return dict((text_type(name), getattr(value, name)) for name, member in
                    vars(kind).items() if type(member).__name__ == 'member_descriptor')
    return None


_PLAIN_BASES = (bool, float, bytes, text_type, tuple, list, dict, set, frozenset) + integer_types


def _field_name(name):
    """Whether a record may have this field: text, never __special__ nor the Record's own."""
    return isinstance(name, text_type) and name[:2] != '__' and name != '_type_name'


def decode(data, start=0):
    """Return the value that data (from offset start) encodes; raise CodecError if malformed."""
    if not isinstance(data, bytes):
        data = bytes(data)
    try:
        value, pos = _decode(data, start, 0)
    except (struct.error, LookupError, TypeError, ValueError) as e:  # (UnicodeError too)
        raise CodecError('malformed payload: %s' % (e,))
    if pos != len(data):
        raise CodecError('malformed payload: %d trailing bytes' % (len(data) - pos))
    return value


def _sized(data, pos):
    size = _U32.unpack_from(data, pos)[0]
    pos += 4
    end = pos + size
    if end > len(data):
        raise CodecError('malformed payload: truncated')
    return data[pos:end], end


def _decode(data, pos, depth):
    if depth > MAX_DEPTH:
        raise CodecError('payload nested more than %d deep' % MAX_DEPTH)
    tag = data[pos:pos + 1]
    pos += 1
    if tag == b'i':
        return _I64.unpack_from(data, pos)[0], pos + 8
    if tag == b's':
        raw, pos = _sized(data, pos)
        return _decode_text(raw), pos
    if tag == b't' or tag == b'l' or tag == b'e' or tag == b'z' or tag == b'd':
        count = _U32.unpack_from(data, pos)[0]
        pos += 4
        if count > len(data) - pos:
            raise CodecError('malformed payload: count larger than the payload')
        items = []
        for _ in range(count * 2 if tag == b'd' else count):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        if tag == b't':
            return tuple(items), pos
        if tag == b'l':
            return items, pos
        keys = items[::2] if tag == b'd' else items
        # Many keys of one hash would take the sum of their squares to insert.
        if count > 64 and count - len(set(map(hash, keys))) > 64:
            raise CodecError('malformed payload')  # keys of one hash
        if tag == b'd':
            return dict(zip(keys, items[1::2])), pos
        if tag == b'e':
            return set(items), pos
        return frozenset(items), pos
    if tag == b'N':
        return None, pos
    if tag == b'T':
        return True, pos
    if tag == b'F':
        return False, pos
    if tag == b'b':
        return _sized(data, pos)
    if tag == b'n':
        raw, pos = _sized(data, pos)
        return _decode_native(raw), pos
    if tag == b'f':
        return _F64.unpack_from(data, pos)[0], pos + 8
    if tag == b'I':
        raw, pos = _sized(data, pos)
        if len(raw) > 5000:
            raise CodecError('malformed payload: integer too long')
        return int(raw.decode('ascii')), pos
    if tag == b'r':
        type_name, pos = _decode(data, pos, depth + 1)
        values, pos = _decode(data, pos, depth + 1)
        fields, pos = _decode(data, pos, depth + 1)
        if type(fields) is tuple and len(fields) == len(values):  # names of the items
            fields = dict(zip(fields, values))
        if not (isinstance(type_name, text_type) and type(values) is tuple
                and type(fields) is dict and all(_field_name(name) for name in fields)):
            raise CodecError('malformed payload: a bad record')
        return Record(values, fields, type_name), pos
    raise CodecError('malformed payload: unknown tag %r' % (tag,))
