"""TCP tunnels through a context: port forwarding without an SSH channel.

A tunnel joins two connected sockets, one in each of two contexts (the
controller and a target), by messages: each end is a Pump whose thread
reads its socket and sends (DATA, bytes) to the other end's handle, never
more than WINDOW bytes unacknowledged, and whose other thread writes what
the other end sends to its socket, acknowledging each chunk with (ACK,
bytes) once written. (EOF, 0) says the sender's socket has reached end of
file: the receiver shuts down its socket's writing side after the data
before it (a half-close, as TCP has). (RESET, 0) says the sender's
connection failed or was closed: the receiver closes its own. An end whose
both directions are done closes its socket and releases its handle.

connector() gives the handle where the caller asks the target to open its
end of a tunnel to a host and port (a local forward: the caller accepted the
connection); each connects on a thread of its own, so a slow or silent
address holds neither the context's calls nor is held by them; listen()
accepts connections on the target and announces each new end's handle to
the caller, which connects its own end and names its handle with (PEER,
handle) (a remote forward). The controller builds its ends from the same
Pump (transport/tunnels.py). A target's ends take messages from the parent
side only; the controller's from that context only.
"""
from __future__ import absolute_import

import errno
import itertools
import socket
import threading
import time

from transport.core import codec
from transport.core.compat import binary, deque, start_daemon_thread
from transport.core.framing import Message

CHUNK = 128 * 1024
WINDOW = 1024 * 1024
CONNECT_TIMEOUT = 30.0
ACCEPT_POLL = 0.25  # how soon a listener sees that it was stopped
# A peer gone is EPIPE, never SIGPIPE, whatever a call has set SIGPIPE to (Linux).
NO_SIGPIPE = getattr(socket, 'MSG_NOSIGNAL', 0)

DATA, ACK, EOF, RESET, PEER = 0, 1, 2, 3, 4
_SOCKET_ERRORS = (socket.error, OSError, IOError)


class Pump(object):
    """One end of a tunnel: a connected socket and the other end's handle.

    The owner registers on_message for this end's handle (self.handle) and
    calls start() once the other end's handle is known (or, with
    await_peer, lets the other end name it with PEER); on_done(pump) is
    called once, when the end is closed. An other end that sends more than
    its window before our acknowledgements is reset.
    """

    def __init__(self, router, sock, peer, on_done=None, await_peer=False):
        self.router = router
        self.sock = sock
        self.peer = peer  # the other end's context
        self.peer_handle = None
        self.handle = None
        self.on_done = on_done
        self._await_peer = await_peer
        self._cond = threading.Condition()
        self._unacknowledged = 0
        self._outgoing = deque()  # chunks for our socket; None: the other end's EOF
        self._queued = 0  # bytes in _outgoing
        self._ended = False  # the other end sent EOF
        self._directions_done = 0
        self._closed = False

    def start(self, peer_handle):
        with self._cond:
            if self.peer_handle is not None:
                return
            self.peer_handle = peer_handle
            closed = self._closed
        if closed:  # closed meanwhile: the other end must not wait for us
            self._tell(RESET, 0)
            return
        for work in (self._read, self._write):
            thread = threading.Thread(target=self._pump, args=(work,), name='transport-tunnel')
            thread.daemon = True
            thread.start()

    def on_message(self, msg):
        """Broker thread: take the other end's data, words and acknowledgements."""
        if msg.is_dead:  # the other end's context is gone
            self.close()
            return
        try:
            word = codec.decode(msg.data)
            if not (isinstance(word, tuple) and len(word) == 2 and isinstance(word[0], int)):
                raise ValueError('malformed tunnel message %r' % (word,))
        except Exception:  # as any word out of turn: the tunnel is reset, then it is reported
            self.reset()
            raise
        kind, value = word
        if kind == PEER and isinstance(value, int) and self._await_peer:
            self.start(value)
        elif kind == RESET:
            self.close()
        else:
            with self._cond:
                fits = self._word_fits(kind, value)
                if fits:
                    if kind == DATA:
                        self._outgoing.append(value)
                        self._queued += len(value)
                    elif kind == EOF:
                        self._outgoing.append(None)
                        self._ended = True
                    else:
                        self._unacknowledged -= value
                    self._cond.notify_all()
            if not fits:
                self.reset()
                raise ValueError('tunnel message of kind %r out of turn' % (kind,))

    def _word_fits(self, kind, value):
        """(Under the lock.) DATA within the window and before EOF, one EOF, an ACK of
        no more than is outstanding."""
        if kind == DATA:
            return (isinstance(value, bytes) and not self._ended
                    and self._queued + len(value) <= WINDOW + CHUNK)
        if kind == EOF:
            return not self._ended
        return (kind == ACK and isinstance(value, int) and not isinstance(value, bool)
                and 0 <= value <= self._unacknowledged)

    def _tell(self, kind, value):
        self.router.send(Message(self.peer, self.router.context_id, self.peer_handle,
                                 codec.encode((kind, value))))

    def _pump(self, work):
        """Run one direction (work: _read or _write, true when it ended, false when
        the end was closed); a socket error resets the tunnel; both ended closes it."""
        try:
            if not work():
                return
        except _SOCKET_ERRORS:
            self.reset()
            return
        with self._cond:
            self._directions_done += 1
            done = self._directions_done == 2
        if done:
            self.close()

    def _read(self):
        """Our socket to the other end, a window at a time."""
        while True:
            with self._cond:
                while self._unacknowledged >= WINDOW and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return False
            data = self.sock.recv(CHUNK)
            with self._cond:
                if self._closed:
                    return False
                self._unacknowledged += len(data)
            if not data:
                self._tell(EOF, 0)
                with self._cond:  # done when all we sent is written (no late ACK)
                    while self._unacknowledged and not self._closed:
                        self._cond.wait()
                return True
            self._tell(DATA, binary(data))

    def _write(self):
        """The other end's data to our socket, acknowledged as written."""
        while True:
            with self._cond:
                while not self._outgoing and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return False
                data = self._outgoing.popleft()
            if data is None:
                self.sock.shutdown(socket.SHUT_WR)
                return True
            self.sock.sendall(data, NO_SIGPIPE)
            with self._cond:
                self._queued -= len(data)
            self._tell(ACK, len(data))

    def reset(self):
        """Close this end and tell the other end to close its own."""
        with self._cond:
            tell = not self._closed and self.peer_handle is not None
        if tell:
            self._tell(RESET, 0)
        self.close()

    def close(self):
        """Close this end (at once: data not yet written is dropped)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes our reader blocked in recv()
        except _SOCKET_ERRORS:
            pass
        self.sock.close()
        if self.handle is not None:
            self.router.remove_handler(self.handle)
        if self.on_done is not None:
            self.on_done(self)


class Listener(object):
    """TCP sockets listening on (host, port) until stop(), on every address the host
    has (localhost is 127.0.0.1 and ::1, as ssh -L binds it; '' is every interface);
    a thread per socket calls on_connection(conn) for each connection it accepts.
    `port`: the port it got."""

    def __init__(self, host, port, on_connection):
        found = []  # each address once: a hosts file may name one twice
        for info in socket.getaddrinfo(host or None, port, 0, socket.SOCK_STREAM, 0,
                                       socket.AI_PASSIVE):
            if info[4][0] not in [other[4][0] for other in found]:
                found.append(info)
        self.socks = []
        self.port = port
        try:
            for family, kind, proto, _, address in found:
                if self.socks:  # the others take the port the first got
                    address = (address[0], self.port) + tuple(address[2:])
                try:
                    self.socks.append(_listening(family, kind, proto, address))
                except _SOCKET_ERRORS as e:
                    if getattr(e, 'errno', None) in _NO_SUCH_ADDRESS:
                        continue  # (an IPv6 address where IPv6 is turned off)
                    raise socket.error(e.errno, 'cannot listen on %s port %s: %s'
                                       % (address[0], address[1], e.strerror or e))
                self.port = self.socks[0].getsockname()[1]
            if not self.socks:
                raise socket.error(errno.EADDRNOTAVAIL, 'cannot listen on %s: no address of '
                                   'it is usable here' % (host,))
        except BaseException:
            for sock in self.socks:
                sock.close()
            raise
        self.on_connection = on_connection
        self.stopped = False
        self._threads = []
        for sock in self.socks:
            thread = threading.Thread(target=self._serve, args=(sock,),
                                      name='transport-tunnel-listener')
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock):
        while not self.stopped:
            try:
                conn = sock.accept()[0]
            except socket.timeout:
                continue
            except _SOCKET_ERRORS:  # out of descriptors, a connection aborted: go on
                if self.stopped:
                    return
                time.sleep(ACCEPT_POLL)
                continue
            if self.stopped:
                conn.close()
                return
            conn.settimeout(None)
            self.on_connection(conn)

    def stop(self):
        """Stop listening now: a connection attempt from here on is refused."""
        self.stopped = True
        for sock in self.socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes accept() where the system can
            except _SOCKET_ERRORS:
                pass
            sock.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()  # a connection it accepted is announced (or closed) by now


_NO_SUCH_ADDRESS = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)


def _listening(family, kind, proto, address):
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == getattr(socket, 'AF_INET6', None):  # its own: the IPv4 one may follow
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(64)
        sock.settimeout(ACCEPT_POLL)
    except BaseException:
        sock.close()
        raise
    return sock


# Target side: the calls the controller makes.

def _current():
    from transport.core import dispatch
    return dispatch.current.router, dispatch.current.caller


def _end(router, caller, sock, await_peer=False):
    pump = Pump(router, sock, caller, await_peer=await_peer)
    pump.handle = router.add_parent_handler(pump.on_message)
    return pump


_connector = []  # the connect service's handle, once made


def connector():
    """The handle (parent side only) of this context's connect service: each message
    (host, port, the other end's handle) connects to (host, port) from here, on a
    thread of its own, as a tunnel's end; the reply is ('ok', this end's handle) or
    ('error', why not)."""
    if not _connector:
        router = _current()[0]

        def on_request(msg):  # broker thread
            if not msg.is_dead:
                start_daemon_thread(lambda: _connect(router, msg), 'transport-tunnel-connect')

        _connector.append(router.add_parent_handler(on_request))
    return _connector[0]


def _connect(router, msg):
    try:
        host, port, peer_handle = codec.decode(msg.data)
        if not isinstance(peer_handle, int):
            raise ValueError('a tunnel end is an int handle, not %r' % (peer_handle,))
        sock = socket.create_connection((host, port), CONNECT_TIMEOUT)
        sock.settimeout(None)
        pump = _end(router, msg.src, sock)
        pump.start(peer_handle)
        reply = ('ok', pump.handle)
    except Exception as e:  # the caller says why, naming the host
        reply = ('error', str(e) or type(e).__name__)
    if msg.reply_to:
        router.send(Message(msg.src, router.context_id, msg.reply_to, codec.encode(reply)))


_listeners = {}
_listener_ids = itertools.count(1)


def listen(host, port, accepted_handle):
    """Listen on (host, port) here until stop_listening(); each accepted connection
    becomes a tunnel's end whose handle goes to accepted_handle in the caller, which
    names its own end with PEER. Returns (listener id, the port listened on)."""
    router, caller = _current()

    def announce(conn):
        pump = _end(router, caller, conn, await_peer=True)
        router.send(Message(caller, router.context_id, accepted_handle,
                            codec.encode(pump.handle)))

    listener = Listener(host, port, announce)
    listener_id = next(_listener_ids)
    _listeners[listener_id] = listener
    return listener_id, listener.port


def stop_listening(listener_id):
    """Stop a listen() at once (the tunnels open go on)."""
    listener = _listeners.pop(listener_id, None)
    if listener is not None:
        listener.stop()
    return listener is not None
