"""A framed-message connection over one or two file descriptors.

A Stream reads from `rfd` and writes to `wfd` (the same fd for a socket).
Sending is safe from any thread: when nothing is queued the caller writes
straight to the non-blocking fd, so a small message costs no thread
hand-off; only the part the kernel does not accept is queued, and only then
is the broker asked to watch for writability. A sender that knows more
messages follow (pipelined calls, routed batches) passes flush=False: the
message is queued and the broker writes everything queued in one go on its
next pass, so a burst costs a few writes rather than one per message. A
thread that produces messages one by one (a target replying to a queue of
calls) also passes `linger`: the broker waits that long before writing, so
the batch is not cut short every time the broker thread gets the GIL.

Reads are 64 KiB, below malloc's mmap threshold: a larger buffer is mapped
and unmapped on every read, which costs more than the message itself. Only
after a read fills the buffer (bulk data) does the stream read 1 MiB at a time.

Before framing starts, a stream may run a BootScanner over what arrives
(see handshake.py); everything after the ready marker is framed messages.
"""
from __future__ import absolute_import

import errno
import os

from transport.core.compat import allocate_lock, deque, set_nonblocking
from transport.core.framing import Decoder, ProtocolError

READ_SIZE = 64 * 1024
BULK_READ_SIZE = 1024 * 1024
WRITE_CHUNK = 1024 * 1024
# Queued messages smaller than this are joined into one write; bigger ones go
# as they are (joining them would copy bulk data again after each partial write).
JOIN_LIMIT = 64 * 1024
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class Stream(object):
    """Moves framed messages between the broker and a peer process."""

    def __init__(self, broker, rfd, wfd, name, on_message, on_disconnect,
                 max_message_size=None, scanner=None, on_boot_event=None):
        self.broker = broker
        self.rfd = rfd
        self.wfd = wfd
        self.name = name
        self.on_message = on_message
        self.on_disconnect = on_disconnect
        self.decoder = Decoder(max_message_size) if max_message_size else Decoder()
        self.scanner = scanner
        self.on_boot_event = on_boot_event
        self.closed = False
        self.reason = None
        self._lock = allocate_lock()
        self._out = deque()
        self._out_offset = 0
        self._watching_writes = False
        self._flush_deferred = False
        self._read_size = READ_SIZE
        self._close_when_flushed = False
        self._write_broken = False
        self.bytes_sent = 0
        self.bytes_received = 0
        set_nonblocking(rfd)
        if wfd != rfd:
            set_nonblocking(wfd)

    def __repr__(self):
        return 'Stream(%r)' % (self.name,)

    def start(self):
        """Begin reading; call on the broker thread."""
        self.broker.start_reading(self.rfd, self._on_readable)

    # -- sending (any thread) -----------------------------------------------

    def send(self, msg, flush=True, linger=0):
        """Queue msg for the peer; returns False if the stream is closed.

        flush=False: more messages follow soon; let the broker write them
        together, on its next pass or, with linger, that many seconds later.
        """
        data = msg.data
        if len(data) < WRITE_CHUNK:
            return self._queue((msg.header() + data,), flush, linger)
        return self._queue((msg.header(), data), flush, linger)

    def send_bytes(self, *chunks):
        """Queue raw bytes (used for the boot payload before framing starts)."""
        return self._queue(chunks, True, 0)

    def queued(self):
        """How many bytes wait to be written (any thread; costs a pass over the queue)."""
        with self._lock:
            return sum(len(chunk) for chunk in self._out) - self._out_offset

    def _queue(self, chunks, flush, linger):
        """Queue chunks, and write now or leave it to the broker, as send() describes."""
        arm = defer = False
        error = None
        with self._lock:
            if self.closed or self._close_when_flushed or self._write_broken:
                return False
            was_empty = not self._out
            self._out.extend(chunks)
            for chunk in chunks:
                self.bytes_sent += len(chunk)
            if not flush:
                if not self._watching_writes and not self._flush_deferred:
                    self._flush_deferred = defer = True
            elif was_empty or self._flush_deferred:
                try:
                    self._flush()
                except OSError as e:
                    error = e
            if self._out and not self._watching_writes and not self._flush_deferred:
                self._watching_writes = arm = True
        if error is not None:
            self.broker.call_soon_or_now(self._write_failed, error)
        elif arm:
            self.broker.call_soon_or_now(self._watch_writes)
        elif defer and linger:
            self.broker.defer(self.broker.call_later, linger, self._write_queued)
        elif defer:
            self.broker.defer(self._write_queued)
        return True

    def _flush(self):
        """Write queued chunks until the kernel refuses or none are left (lock held)."""
        out = self._out
        while out:
            offset = self._out_offset
            if len(out) > 1 and len(out[0]) - offset < JOIN_LIMIT:
                # Small queued messages go out in one write.
                parts = [out.popleft()[offset:] if offset else out.popleft()]
                size = len(parts[0])
                while out and size + len(out[0]) <= JOIN_LIMIT:
                    size += len(out[0])
                    parts.append(out.popleft())
                out.appendleft(b''.join(parts))
                offset = self._out_offset = 0
            chunk = out[0]
            try:
                written = os.write(self.wfd, chunk[offset:offset + WRITE_CHUNK])
            except OSError as e:
                if e.errno in _AGAIN:
                    return
                raise
            offset += written
            if offset >= len(chunk):
                out.popleft()
                offset = 0
            self._out_offset = offset

    def _watch_writes(self):
        if not self.closed:
            self.broker.start_writing(self.wfd, self._write_queued)

    def _write_queued(self, fd=None):
        """Write what is queued (broker thread): a deferred flush, or the fd is writable.

        While output is left the broker watches for writability; once none is, it
        stops, and a stream that was to close once flushed disconnects.
        """
        error = None
        with self._lock:
            self._flush_deferred = False
            if self.closed:
                return
            try:
                self._flush()
            except OSError as e:
                error = e
            was_watching = self._watching_writes
            left = self._watching_writes = bool(self._out)
        if error is not None:
            self._write_failed(error)
        elif left:
            if not was_watching:  # else the writer is registered, or its registration on the way
                self._watch_writes()
        else:
            # Also undoes a registration a sender asked for before this pass wrote all.
            self.broker.stop_writing(self.wfd)
            if self._close_when_flushed:
                self.disconnect('closed')

    def _write_failed(self, error):
        """A write failed (broker thread). With one fd for both ways the stream is done;
        with two, the peer may have written its last messages before it went, so
        only the writing stops, and the reader disconnects at end of file."""
        reason = 'write failed: %s' % (error.strerror,)
        if self.rfd == self.wfd:
            self.disconnect(reason)
            return
        with self._lock:
            self._write_broken = True
            self._out.clear()
            self._out_offset = 0
        if not self.closed:
            self.broker.stop_writing(self.wfd)
        if self._close_when_flushed:
            self.disconnect(reason)

    def close_when_flushed(self):
        """Disconnect once queued output is written (broker thread)."""
        with self._lock:
            self._close_when_flushed = True
            empty = not self._out
            if self._flush_deferred:
                return
        if empty:
            self.disconnect('closed')

    # -- receiving (broker thread) -------------------------------------------

    def _on_readable(self, fd):
        size = self._read_size
        try:
            data = os.read(self.rfd, size)
        except OSError as e:
            if e.errno in _AGAIN:
                return
            self.disconnect('read failed: %s' % (e.strerror,))
            return
        if not data:
            self.disconnect('end of file')
            return
        self.bytes_received += len(data)
        if len(data) == size:
            self._read_size = BULK_READ_SIZE
        elif size != READ_SIZE and len(data) < READ_SIZE:
            self._read_size = READ_SIZE
        if self.scanner is not None:
            scanner = self.scanner
            seen = (scanner.first_stage_seen, scanner.wants_source)
            data = scanner.feed(data)
            if scanner.state == 'waiting':
                if (scanner.first_stage_seen, scanner.wants_source) != seen:
                    self.on_boot_event(self, scanner)
                return
            self.scanner = None
            self.on_boot_event(self, scanner)
            if self.closed or not data:
                return
        try:
            messages = self.decoder.feed(data)
        except ProtocolError as e:
            self.disconnect('protocol error: %s' % (e,))
            return
        for msg in messages:
            msg.stream = self
            self.on_message(msg)
            if self.closed:
                return

    def disconnect(self, reason):
        """Close the fds and report the disconnect, once (broker thread)."""
        if self.closed:
            return
        with self._lock:
            self.closed = True
            self.reason = reason
            self._out.clear()
            self._out_offset = 0
        self.broker.stop_reading(self.rfd)
        self.broker.stop_writing(self.wfd)
        for fd in set((self.rfd, self.wfd)):
            try:
                os.close(fd)
            except OSError:
                pass
        self.on_disconnect(self, reason)
