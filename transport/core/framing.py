"""Message framing: the fixed header and a sans-I/O decoder for byte streams.

Every message is a 24-byte big-endian header followed by `length` bytes of
data:

    magic u16 | flags u16 | dst u32 | src u32 | handle u32 | reply_to u32 | length u32

The decoder is fed whatever bytes arrive and returns complete messages; it
never touches a file descriptor, so every malformed input can be tested with
plain byte strings. docs/protocol.md is the reference for this format.
"""
from __future__ import absolute_import

import struct

from transport.core.handles import FLAG_DEAD

MAGIC = 0x7470          # b'tp'
# What a booted core writes right before its first message (see handshake.py).
READY_MARKER = b'\n\x00tp-ready\x00\n'
HEADER = struct.Struct('>HHIIIII')
HEADER_SIZE = HEADER.size
DEFAULT_MAX_MESSAGE_SIZE = 128 * 1024 * 1024
NO_REPLY = 0


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid message stream."""


class Message(object):
    """One framed message. `stream` is set on receipt: the stream it arrived on."""

    __slots__ = ('dst', 'src', 'handle', 'reply_to', 'flags', 'data', 'stream')

    def __init__(self, dst, src, handle, data=b'', reply_to=NO_REPLY, flags=0):
        self.dst = dst
        self.src = src
        self.handle = handle
        self.reply_to = reply_to
        self.flags = flags
        self.data = data
        self.stream = None

    @property
    def is_dead(self):
        return bool(self.flags & FLAG_DEAD)

    def header(self):
        return HEADER.pack(MAGIC, self.flags, self.dst, self.src, self.handle,
                           self.reply_to, len(self.data))

    def pack(self):
        return self.header() + self.data

    def __repr__(self):
        return 'Message(dst=%d, src=%d, handle=%d, reply_to=%d, flags=%#x, %d bytes)' % (
            self.dst, self.src, self.handle, self.reply_to, self.flags, len(self.data))


class Decoder(object):
    """Turns a byte stream into Messages; bounds each message's size."""

    def __init__(self, max_message_size=DEFAULT_MAX_MESSAGE_SIZE):
        self.max_message_size = max_message_size
        self._buf = bytearray()

    def pending(self):
        """How many bytes of an incomplete message are held."""
        return len(self._buf)

    def feed(self, data):
        """Add data; return the list of messages it completed (possibly empty)."""
        buf = self._buf
        buf += data
        messages = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            magic, flags, dst, src, handle, reply_to, length = HEADER.unpack_from(buf, pos)
            if magic != MAGIC:
                raise ProtocolError('bad magic %#06x: the stream is not framed messages' % magic)
            if length > self.max_message_size:
                raise ProtocolError('message of %d bytes exceeds the limit of %d bytes'
                                    % (length, self.max_message_size))
            body = pos + HEADER_SIZE
            if end - body < length:
                break
            msg = Message(dst, src, handle, bytes(buf[body:body + length]), reply_to, flags)
            messages.append(msg)
            pos = body + length
        if pos:
            del buf[:pos]
        return messages
