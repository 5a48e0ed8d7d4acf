"""Finding where a booted child's framed stream begins (sans-I/O).

Between spawning a child and its first framed message, its output may carry
other text: a login shell's banner, an error from the shell ("python: not
found"). The first stage writes FIRST_STAGE_MARKER once it runs (a parent
that must answer a password prompt first waits for it before sending the
payload), or UNSUPPORTED_PREFIX and the version for an interpreter it cannot
run; the booted core writes READY_MARKER right before its first message.
A first stage sent byte code of a tag (magic number) other than its own
skips it, with the boot message after it, and writes WANT_SOURCE_MARKER;
the parent then sends the source payload and the boot message again.
BootScanner is fed the child's output and says which of these happened,
keeping the other text for error messages.

Each payload is preceded by payload_header(): the payload's size, the size
of the boot message that follows it, and its tag ('source' or a magic
number in hex), in PAYLOAD_HEADER_SIZE bytes.
"""
from __future__ import absolute_import

from transport.core.framing import READY_MARKER

FIRST_STAGE_MARKER = b'\n\x00tp-first-stage\x00\n'
UNSUPPORTED_PREFIX = b'tp-unsupported-python '
WANT_SOURCE_MARKER = b'\n\x00tp-want-source\x00\n'
MAX_PREAMBLE = 64 * 1024
PAYLOAD_HEADER_SIZE = 40


def payload_header(payload_size, boot_message_size, tag):
    """The fixed-size line the first stage reads before a payload."""
    header = ('%10d %10d %-17s' % (payload_size, boot_message_size, tag)).encode('ascii') + b'\n'
    if len(header) != PAYLOAD_HEADER_SIZE:
        raise ValueError('payload tag too long: %r' % (tag,))
    return header


class BootScanner(object):
    """Feed output with feed(); check .state: 'waiting', 'ready' or 'unsupported'."""

    def __init__(self):
        self.state = 'waiting'
        self.preamble = b''
        self.found_version = None
        self.first_stage_seen = False
        self.wants_source = False

    def feed(self, data):
        """Consume data; once ready, return the bytes after the marker (else b'')."""
        if self.state != 'waiting':
            raise ValueError('BootScanner.feed() after the handshake finished')
        self.preamble += data
        if not self.first_stage_seen:
            self.first_stage_seen = self._take(FIRST_STAGE_MARKER)
        if not self.wants_source:
            self.wants_source = self._take(WANT_SOURCE_MARKER)
        index = self.preamble.find(READY_MARKER)
        if index >= 0:
            rest = self.preamble[index + len(READY_MARKER):]
            self.preamble = self.preamble[:index]
            self.state = 'ready'
            return rest
        index = self.preamble.find(UNSUPPORTED_PREFIX)
        if index >= 0:
            line_end = self.preamble.find(b'\n', index)
            if line_end >= 0:
                self.found_version = self.preamble[index + len(UNSUPPORTED_PREFIX):line_end].decode(
                    'ascii', 'replace').strip()
                self.state = 'unsupported'
                return b''
        if len(self.preamble) > MAX_PREAMBLE:
            # Keep the tail: it is what an error message will show.
            self.preamble = self.preamble[-MAX_PREAMBLE:]
        return b''

    def _take(self, marker):
        """Remove marker from the preamble; return whether it was there."""
        index = self.preamble.find(marker)
        if index < 0:
            return False
        self.preamble = self.preamble[:index] + self.preamble[index + len(marker):]
        return True

    def preamble_text(self):
        return self.preamble.decode('utf-8', 'replace').strip()
