"""The entry point of a booted target.

The first stage (see transport/bootstrap.py) loads the core's modules and
calls main(). From here on fd 0 and fd 1 belong to the parent connection
only: they are moved to fresh descriptors, and fd 0 becomes /dev/null and
fd 1 a copy of stderr, so a stray print() can never corrupt the stream.
"""
from __future__ import absolute_import

import errno
import os
import select
import sys

from transport.core import codec
from transport.core.broker import Broker
from transport.core.compat import Event, exit_now, monotonic, retry_eintr, set_cloexec
from transport.core.dispatch import Dispatcher
from transport.core.forwarding import BYTE_CODE_TAG, ModuleForwarder
from transport.core.framing import HEADER, HEADER_SIZE, MAGIC, READY_MARKER, Message
from transport.core.handles import BOOT_CONFIG, CALL_FUNCTION, CONNECT, SHUTDOWN, SIGNAL_COMMANDS
from transport.core.router import Router
from transport.core.stream import Stream

BOOT_TIMEOUT = 30.0
FLUSH_TIMEOUT = 2.0


class BootError(Exception):
    """The parent did not send a valid boot configuration in time."""


def read_exact(fd, size, deadline):
    """Read exactly size bytes from fd (blocking or not) before deadline."""
    chunks = []
    while size:
        remaining = deadline - monotonic()
        if remaining <= 0:
            raise BootError('timed out waiting for the boot configuration')
        if not retry_eintr(select.select, [fd], [], [], remaining)[0]:
            continue
        try:
            data = os.read(fd, size)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINTR):
                continue
            raise
        if not data:
            raise BootError('the parent closed the connection during boot')
        chunks.append(data)
        size -= len(data)
    return b''.join(chunks)


def read_boot_config(fd):
    deadline = monotonic() + BOOT_TIMEOUT
    magic, _, _, _, handle, _, length = HEADER.unpack(read_exact(fd, HEADER_SIZE, deadline))
    if magic != MAGIC or handle != BOOT_CONFIG:
        raise BootError('expected the boot configuration, got handle %d' % handle)
    return codec.decode(read_exact(fd, length, deadline))


def take_over_stdio():
    """Move the parent connection off fds 0 and 1; return (read fd, write fd)."""
    rfd = os.dup(0)
    wfd = os.dup(1)
    set_cloexec(rfd)
    set_cloexec(wfd)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    return rfd, wfd


def _loaded(module, name):
    """transport.core.<module>.<name>, or None while that on-demand module is not
    imported (that far): the broker thread only acts on what calls have set up."""
    return getattr(sys.modules.get('transport.core.' + module), name, None)


class Target(object):
    """The state of one booted target: its router, broker and dispatcher."""

    def __init__(self, rfd, wfd, config):
        self.config = config
        self.broker = Broker(name='transport-broker')
        self.router = Router(self.broker, config['context_id'])
        self.stream = Stream(self.broker, rfd, wfd, 'parent', self.router.on_message,
                             self._parent_lost, config.get('max_message_size'))
        self.router.set_parent(self.stream, config['parent_id'])
        self.dispatcher = Dispatcher(self.router)
        self.router.add_handler(CALL_FUNCTION, self.dispatcher.enqueue)
        self.router.add_handler(SHUTDOWN, self._on_shutdown)
        self.router.add_handler(CONNECT, self._on_connect)
        self.router.add_handler(SIGNAL_COMMANDS, self._on_signal_commands)
        self.modules = ModuleForwarder(self.router)
        self.modules.install()
        # The loop ends only if it fails: nothing could reach the parent any more.
        self.broker.add_shutdown_hook(lambda: self._leave(1))

    def _parent_lost(self, stream, reason):
        self._leave(0)

    def _leave(self, status):
        # Orphans must not linger: leave now; children see end of file and follow, and
        # running commands are hung up on.
        _discard_transfers()
        hang_up_running = _loaded('commands', 'hang_up_running')
        if hang_up_running:
            hang_up_running()
        exit_now(status)

    def _on_shutdown(self, msg):
        self.dispatcher.stop()

    def _on_signal_commands(self, msg):
        """Signal the running commands now, not after the call that runs them."""
        signal_running = _loaded('commands', 'signal_running')  # none: no command ran yet
        if signal_running:
            signal_running(codec.decode(msg.data))  # it checks what it was sent

    def _on_connect(self, msg):
        """Start a child context here, as an intermediary (see docs/protocol.md, CONNECT)."""
        own_id = self.config['context_id']

        def reply(result):
            self.router.send(Message(msg.src, own_id, msg.reply_to, codec.encode(result)))

        try:
            from transport.core.spawn import start_child  # preloaded by the controller
        except ImportError as e:
            reply(('fail', 'cannot start children here: %s' % (e,), {}))
            return
        start_child(self.router, codec.decode(msg.data), reply)

    def hello(self):
        info = {
            'pid': os.getpid(),
            'python': sys.executable,
            'version': '%d.%d.%d' % sys.version_info[:3],
            'byte_code_tag': BYTE_CODE_TAG,
        }
        return Message(self.config['parent_id'], self.config['context_id'],
                       self.config['hello_handle'], codec.encode(('ok', info)))

    def run(self):
        self.broker.start()
        self.broker.defer(self.stream.start)
        self.stream.send_bytes(READY_MARKER, self.hello().pack())
        self.dispatcher.run()
        self.finish()

    def finish(self):
        """Run the exit handlers, as at a program's end; flush what is queued for the
        parent; exit."""
        try:  # 2.7 runs sys.exitfunc (atexit's, if it was imported); Python 3 atexit's
            (getattr(sys, 'exitfunc', 0) or sys.modules['atexit']._run_exitfuncs)()
        except BaseException:  # reported on stderr, as Python does
            pass
        done = Event()
        self.stream.on_disconnect = lambda stream, reason: done.set()
        self.broker.defer(self.stream.close_when_flushed)
        done.wait(FLUSH_TIMEOUT)
        _discard_transfers()  # shut down while a transfer was under way
        exit_now(0)


def _discard_transfers():
    """Remove the temporary files of unfinished transfers: they never reach their place."""
    in_flight, discard = _loaded('files', 'in_flight'), _loaded('files', 'discard')
    if in_flight and discard:
        for temporary in list(in_flight):
            discard(temporary)


def undo_locale_coercion():
    """Python 3.7+ started under the C locale sets LC_CTYPE (PEP 538) in its environment;
    commands and children here get the environment the login gave, as over ssh."""
    env = os.environ
    if (getattr(sys.flags, 'utf8_mode', 0) and 'PYTHONUTF8' not in env
            and 'utf8' not in sys._xoptions and env.get('LC_CTYPE') in ('C.UTF-8', 'C.utf8', 'UTF-8')):
        del env['LC_CTYPE']


def main():
    undo_locale_coercion()
    rfd, wfd = take_over_stdio()
    try:
        config = read_boot_config(rfd)
    except BootError as e:
        sys.stderr.write('transport: %s\n' % (e,))
        exit_now(1)
    Target(rfd, wfd, config).run()
