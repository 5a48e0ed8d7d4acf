"""Starting a child process and booting the core in it.

A Connection spawns argv (whose last stage runs the first-stage bootstrap),
writes the compressed core and the BOOT_CONFIG message to its stdin without
waiting for anything to drain, scans its stdout for the ready marker, and
waits for the child's hello reply, all under one deadline. It reports
exactly one outcome: on_ready(hello) or on_failed(reason, details).

The child runs in a new session, so a terminal's Ctrl-C reaches only the
controller, which then shuts its contexts down in order.
"""
from __future__ import absolute_import

import atexit
import errno
import fcntl
import os
import sys

from transport.core import codec
from transport.core.compat import PY2, make_pipe, monotonic, set_nonblocking, start_daemon_thread
from transport.core.framing import Message
from transport.core.handles import BOOT_CONFIG
from transport.core.handshake import BootScanner, payload_header
from transport.core.os_strings import os_string
from transport.core.relaying import serve_children
from transport.core.stream import Stream

F_SETPIPE_SZ = getattr(fcntl, 'F_SETPIPE_SZ', 1031)
STDERR_TAIL = 8192
# A child's stderr line longer than this is reported in pieces (memory stays bounded).
STDERR_LINE_LIMIT = 8192
REAP_INTERVAL = 0.02
REAP_PATIENCE = 2.0
# At a booted child's end of file, how long to wait for its exit status and last stderr
# to explain the loss (they follow within milliseconds unless something holds them).
LOSS_PATIENCE = 0.5
# stderr that came within this many seconds before the end of file may explain it.
RECENT_STDERR = 0.5
# Why a start failed when the first stage, sent source, asked for source: what it took
# for the payload's header came from elsewhere (something had read its stdin first).
GARBLED_HEADER = 'the first stage read something other than the bootstrap sent to it'
# At connect_timeout, a child whose first stage has not announced itself is still
# logging in, and the login may end at that same moment with its own reason (ssh's
# ConnectTimeout is connect_timeout too): it gets this long more to give it (its end,
# when it has ended already, is reported with that reason meanwhile).
LOGIN_WORDS_GRACE = 1.0
# How many prompts in all a child's login may write (see Connection's repeated_prompts).
REPEATED_ANSWERS = 16

# Per broker, its connections whose process is not reaped or whose stderr is still open:
# the broker's timers finish them; reap_remaining() those left when its loop has ended.
_unreaped = {}
# POSIX fixes these numbers everywhere; the signal module would import enum with it.
SIGKILL = 9
SIGTERM = 15
SIGNAL_NAMES = {1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 6: 'SIGABRT', 9: 'SIGKILL',
                11: 'SIGSEGV', 13: 'SIGPIPE', 14: 'SIGALRM', 15: 'SIGTERM'}


HAVE_POSIX_SPAWN = sys.version_info >= (3, 8) and hasattr(os, 'posix_spawnp')

# Each child holds up to this many files open here for as long as it lives (an ssh
# client's pipes: 3; the paramiko backend's socket, channel and wake-up pipes: 7); some
# more are left for everything else. No soft limit is below the lowest (macOS's).
FILES_PER_CHILD = 8
FILES_SPARE = 64
LOWEST_SOFT_LIMIT = 256


def make_room_for_children(children):
    """Raise this process's soft limit on open files (ulimit -n), if it is short and the
    hard limit allows, so that `children` children fit: under the common 1024 a fan-out
    failed near 300 hosts with "Too many open files". A process that never has many
    children keeps its limit as it was."""
    needed = children * FILES_PER_CHILD + FILES_SPARE
    if needed <= LOWEST_SOFT_LIMIT:
        return
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft >= needed:
            return
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if raised > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    except (ImportError, ValueError, OSError):  # no such limit, or a cap below the hard one
        pass


def to_text(value):
    """Decode bytes as UTF-8 for messages and names; text passes through."""
    if isinstance(value, bytes) and not PY2:
        return value.decode('utf-8', 'replace')
    return value


def printable(text, limit):
    """text (bytes are read as UTF-8) cut to limit characters, control characters made
    '?': safe to show on a terminal, whoever wrote it."""
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    return u''.join(u'?' if c < u' ' or u'\x7f' <= c <= u'\x9f' else c for c in text[:limit])


def last_words(chunks, since):
    """What a process that ended said about it: of the stderr chunks ((time, bytes))
    that came since then, the last line that speaks of an error ('Fatal Python error:
    ...'), else the last line; as text, printable, at most 300 characters."""
    text = b''.join(data for at, data in chunks if at >= since).decode('utf-8', 'replace')
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if 'error' in line.lower() or 'fatal' in line.lower()]
    return printable((errors or lines or [u''])[-1], 300)


def start_child(router, spec, reply):
    """Start the child a CONNECT message describes (spec), here, as an intermediary;
    reply(('ok', hello) or ('fail', reason, details)) once (see docs/protocol.md)."""

    def on_stderr(connection, line):
        name = connection.name
        if PY2 and not isinstance(name, bytes):  # a text name would decode line as ASCII
            name = name.encode('utf-8')
        text = '[%s] %s\n' % (name, line)
        stream = getattr(sys.stderr, 'buffer', None)
        if stream is None:  # 2.7: text is a native str already
            sys.stderr.write(text)
            return
        sys.stderr.flush()  # 3.6 under C: its text stream would write \xe9 for an e-acute
        stream.write(text.encode('utf-8', 'surrogateescape'))
        stream.flush()

    serve_children(router)  # the child's imports are asked of us
    try:
        config = {'context_id': spec['context_id'], 'parent_id': router.context_id,
                  'max_message_size': spec['max_message_size'], 'name': spec['name']}
        connection = Connection(router, spec['context_id'], spec['argv'], spec['payload'],
                                config, spec['connect_timeout'], spec['name'],
                                lambda conn, info: reply(('ok', info)),
                                lambda conn, reason, details: reply(('fail', reason, details)),
                                on_stderr, spec['options'])
        connection.start()
    except Exception as e:  # told at once, not after the parent's connect timeout
        reply(('fail', 'cannot start the child here: %s: %s' % (type(e).__name__, e), {}))


def _spawn(argv, stdin, stdout, stderr, env):
    """Start argv in a new session with the given fds as 0, 1 and 2; return its pid."""
    argv = [os_string(arg) for arg in argv]  # a key's or an interpreter's path, say
    if HAVE_POSIX_SPAWN:
        actions = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
                   (os.POSIX_SPAWN_DUP2, stderr, 2)]
        return os.posix_spawnp(argv[0], argv, os.environ if env is None else env,
                               file_actions=actions, setsid=True)
    import subprocess  # Python 2.7 and 3.6/3.7 intermediaries
    popen = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr,
                             close_fds=True, preexec_fn=os.setsid, env=env)
    popen.returncode = 0  # we reap it ourselves; keep Popen from reaping it later
    return popen.pid


class ChildProcess(object):
    """A spawned child with its stdin, stdout and stderr as non-inherited pipes."""

    def __init__(self, argv, pipe_size=None, env=None):
        pipes = [make_pipe() for _ in range(3)]
        if pipe_size:
            for r, w in pipes:
                fcntl.fcntl(w, F_SETPIPE_SZ, pipe_size)
        (in_r, in_w), (out_r, out_w), (err_r, err_w) = pipes
        try:
            self.pid = _spawn(argv, in_r, out_w, err_w, env)
        except BaseException:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        self.stdin = in_w
        self.stdout = out_r
        self.stderr = err_r
        self.status = None

    def poll(self):
        """Exit status (negative: killed by that signal), or None while it runs."""
        if self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except OSError as e:
                if e.errno != errno.ECHILD:
                    raise
                pid, status = self.pid, 0  # reaped elsewhere: the status is lost
            if pid:
                if os.WIFSIGNALED(status):
                    self.status = -os.WTERMSIG(status)
                else:
                    self.status = os.WEXITSTATUS(status)
        return self.status

    def kill(self):
        """Kill the child's whole process group (it leads its own session)."""
        self._signal(SIGKILL)

    def terminate(self):
        """Ask the child's process group to end. su and sudo pass SIGTERM on to the
        command they started (in a session of its own, which SIGKILL would leave running)."""
        self._signal(SIGTERM)

    def _signal(self, signum):
        for target in (lambda: os.killpg(self.pid, signum), lambda: os.kill(self.pid, signum)):
            try:
                target()
                return
            except OSError:
                pass


def askpass_environment(program):
    """Write program (bytes) as an executable file in a new private directory; return
    the directory and an environment naming the file as ssh's SSH_ASKPASS."""
    import tempfile
    directory = tempfile.mkdtemp(prefix='transport-askpass-')  # mode 0700
    path = os.path.join(directory, 'askpass')
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
        try:
            os.write(fd, program)
        finally:
            os.close(fd)
    except BaseException:
        remove_askpass(directory)
        raise
    env = dict(os.environ)
    env['SSH_ASKPASS'] = path
    env['SSH_ASKPASS_REQUIRE'] = 'force'  # OpenSSH 8.4 and later
    env.setdefault('DISPLAY', 'transport:0')  # what earlier clients need to use it at all
    return directory, env


def remove_askpass(directory):
    try:
        os.unlink(os.path.join(directory, 'askpass'))
    except OSError:
        pass
    try:
        os.rmdir(directory)
    except OSError:
        pass


def describe_status(status):
    if status is None:
        return 'still running'
    if status < 0:
        name = SIGNAL_NAMES.get(-status)
        return 'killed by signal %d%s' % (-status, ' (%s)' % name if name else '')
    return 'exited with status %d' % status


class Connection(object):
    """Boots one child and then owns its stream and process. Broker thread only.

    `options` (all optional):
      pipe_size: kernel buffer size for the child's pipes (F_SETPIPE_SZ).
      prompt, password: a password prompt (bytes) the child may write on
        stderr, and the answer to write on its stdin. The payload is then held
        back until the first stage announces itself, so the password can
        never be read as payload. A second prompt means the password was
        refused; a prompt with no password to give fails at once.
      repeated_prompts: {prompt: answer} (bytes) for more prompts the child may
        write on stderr, each answered as above every time it comes (ssh asks
        for a key's passphrase once per key), at most REPEATED_ANSWERS times.
      auth_failures: stderr texts (bytes) that mean authentication was refused.
      askpass: the text of a program (a shell script) that asks for the password
        as above, for a client that runs one to ask (ssh's SSH_ASKPASS). It is
        written to a private directory here for the child's login, named in the
        child's environment by SSH_ASKPASS, and removed when the login ends.
      process: a child already started by other means (the controller's paramiko
        backend), with the same stdin/stdout/stderr fds, poll() and kill().
      fallback: when `payload` is byte code, the (tag, source payload) to send
        instead if the first stage asks for source (its interpreter's tag differs).

    `payload` is a (tag, compressed payload) pair: tag 'source' or a byte-code tag.
    """

    def __init__(self, router, context_id, argv, payload, config, connect_timeout,
                 name, on_ready, on_failed, on_stderr=None, options=None):
        options = options or {}
        self.router = router
        self.broker = router.broker
        self.context_id = context_id
        self.argv = argv
        self.payload = payload
        self.config = config
        self.connect_timeout = connect_timeout
        self.name = name
        self.on_ready = on_ready
        self.on_failed = on_failed
        self.on_stderr = on_stderr
        self.pipe_size = options.get('pipe_size')
        self.process = options.get('process')
        self.fallback = options.get('fallback')
        self.prompt = options.get('prompt')
        self._password = options.get('password')
        self._repeated = dict(options.get('repeated_prompts') or {})
        # Every prompt this child may write on stderr (never logged).
        self._prompt_texts = [p for p in [self.prompt] + list(self._repeated) if p is not None]
        self.auth_failures = options.get('auth_failures') or ()
        self.askpass = options.get('askpass')
        self._askpass_dir = None
        self.stream = None
        self.state = 'new'
        self.hello = None
        self.preamble = ''
        self.stderr_tail = b''
        self._stderr_unscanned = b''
        self._stderr_partial = b''
        self._stderr_open = False
        self._recent_stderr = []  # (time, bytes) of the last RECENT_STDERR seconds
        self._loss = None  # (stream, reason, end of file time) until the loss is reported
        self._prompts = 0
        self._password_prompts = 0
        self._payload_sent = False
        self._boot_message = None
        self._failure = None
        self._timer = None
        self._first_stage_seen = False

    def __repr__(self):
        return 'Connection(%r, state=%r)' % (self.name, self.state)

    # -- starting ------------------------------------------------------------

    def start(self):
        try:
            make_room_for_children(len(_unreaped.get(self.broker, ())) + 1)
            if self.process is None:
                env = None
                if self.askpass is not None:
                    self._askpass_dir, env = askpass_environment(self.askpass)
                self.process = ChildProcess(self.argv, self.pipe_size, env)
        except Exception as e:  # also an argv no exec takes: fail now, not at connect_timeout
            failed_errno = getattr(e, 'errno', None)
            if isinstance(e, OSError) and self.askpass is not None and self._askpass_dir is None:
                reason = 'cannot write the script ssh asks for passwords with: %s: %s' % (
                    e.filename or 'the temporary directory', e.strerror)
                failed_errno = None  # nothing was started: no program to name
            elif isinstance(e, OSError):
                reason = 'cannot start %s: %s' % (self.argv[0], e.strerror)
            else:
                reason = 'cannot start %r: %s: %s' % (self.argv[0], type(e).__name__, e)
            self._fail(reason, {'errno': failed_errno, 'exit_status': None,
                                'stderr': '', 'preamble': '', 'auth': False})
            return
        self.state = 'booting'
        _unreaped.setdefault(self.broker, set()).add(self)
        self.stream = Stream(self.broker, self.process.stdout, self.process.stdin, self.name,
                             self.router.on_message, self._on_disconnect,
                             self.config.get('max_message_size'), BootScanner(), self._on_boot_event)
        self.router.add_child(self.context_id, self.stream)
        self.stream.start()
        self._stderr_open = True
        set_nonblocking(self.process.stderr)
        self.broker.start_reading(self.process.stderr, self._on_stderr_readable)
        if not self._prompt_texts:
            self._send_payload()
        self._timer = self.broker.call_later(self.connect_timeout, self._on_timeout)

    def _send_payload(self):
        """Send the first-choice payload and the boot message, once."""
        if self._payload_sent:
            return
        self._payload_sent = True
        config = dict(self.config)
        config['hello_handle'] = self.router.add_reply_handler(self._on_hello, self.context_id)
        self._boot_message = Message(self.context_id, self.router.context_id, BOOT_CONFIG,
                                     codec.encode(config)).pack()
        self._send(self.payload)

    def _send(self, payload):
        """Send a (tag, payload) pair behind its header, then the boot message."""
        tag, data = payload
        boot = self._boot_message
        self.stream.send_bytes(payload_header(len(data), len(boot), tag), data, boot)

    def _on_boot_event(self, stream, scanner):
        if scanner.state == 'unsupported':
            self._fail('unsupported Python %s (transport needs 2.7 or 3.6 and later)'
                       % scanner.found_version, self._details(scanner.preamble_text()))
            self.stream.disconnect('unsupported interpreter')
        elif scanner.state == 'waiting':
            self._first_stage_seen = True
            self._send_payload()  # the first stage runs: no password prompt can follow
            self._remove_askpass()
            if scanner.wants_source:
                if self.payload[0] == 'source':  # the header it read was not ours
                    self._fail(GARBLED_HEADER, self._details(scanner.preamble_text()))
                    self.stream.disconnect('garbled bootstrap')
                elif self.fallback is None:
                    self._fail('the interpreter cannot run the byte code sent to it',
                               self._details(scanner.preamble_text()))
                    self.stream.disconnect('byte code refused')
                else:
                    self._send(self.fallback)
                    self.fallback = None
        else:
            self.preamble = scanner.preamble_text()

    def _on_hello(self, msg):
        if msg.is_dead:
            return  # the stream ended before the hello: _on_disconnect reports it
        try:
            status, info = codec.decode(msg.data)
            if status != 'ok':
                raise ValueError(status)
        except (codec.CodecError, TypeError, ValueError):
            self._give_up("the target's hello is malformed (not this transport's core?)",
                          self._details(''))
            return
        self.hello = info
        self.state = 'ready'
        self._password = None
        self._repeated = {}
        self._timer.cancel()
        self.on_ready(self, info)

    def _on_timeout(self, grace=LOGIN_WORDS_GRACE):
        if self.state != 'booting':
            return
        if grace and not self._first_stage_seen:
            self._timer = self.broker.call_later(grace, self._on_timeout, 0)
        else:
            self._give_up('timed out after %gs waiting for the interpreter to start'
                          % self.connect_timeout, self._details(''), 'connect timeout')

    # -- stderr: the password dialogue, then log lines -------------------------

    def _on_stderr_readable(self, fd):
        data = self._read_stderr()
        if data is None:
            return
        if not data:
            self._close_stderr()
            return
        self._take_stderr(data)

    def _read_stderr(self):
        """What stderr holds now: bytes, b'' at its end (or an error), None for nothing yet."""
        try:
            return os.read(self.process.stderr, 65536)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINTR):
                return None
            return b''

    def _take_stderr(self, data):
        self.stderr_tail = (self.stderr_tail + data)[-STDERR_TAIL:]
        now = monotonic()
        recent = self._recent_stderr
        recent.append((now, data[-STDERR_LINE_LIMIT:]))
        while recent[0][0] < now - 2 * RECENT_STDERR or len(recent) > 64:  # some after EOF
            recent.pop(0)
        if self.state == 'booting' and not self._payload_sent:
            self._scan_dialogue(data)
        if self.on_stderr is not None:
            lines = (self._stderr_partial + data).split(b'\n')
            self._stderr_partial = lines.pop()
            if len(self._stderr_partial) > STDERR_LINE_LIMIT:  # reported in pieces
                lines.append(self._stderr_partial)
                self._stderr_partial = b''
            self._log_stderr_lines(lines)

    def _log_stderr_lines(self, lines):
        for line in lines:
            if self.on_stderr is not None and not any(p in line for p in self._prompt_texts):
                self.on_stderr(self, to_text(line))

    def _scan_dialogue(self, data):
        self._stderr_unscanned += data
        for text in self.auth_failures:
            if text in self._stderr_unscanned:
                self._fail_auth('authentication refused')
                return
        if not self._prompt_texts:
            return
        while True:
            found = [(self._stderr_unscanned.find(p), p) for p in self._prompt_texts]
            found = [(at, p) for at, p in found if at >= 0]
            if not found:
                break
            at, prompt = min(found)
            self._stderr_unscanned = self._stderr_unscanned[at + len(prompt):]
            self._prompts += 1
            if prompt in self._repeated:
                if self._prompts > REPEATED_ANSWERS:
                    self._fail_auth('asked too many times')
                    return
                self.stream.send_bytes(self._repeated[prompt] + b'\n')
                continue
            self._password_prompts += 1
            if self._password is None:
                self._fail_auth('a password is required')
                return
            if self._password_prompts > 1:
                self._fail_auth('the password was refused')
                return
            self.stream.send_bytes(self._password + b'\n')
        keep = max(len(p) for p in self._prompt_texts)
        self._stderr_unscanned = self._stderr_unscanned[-keep:]

    def _fail_auth(self, reason):
        details = self._details('')
        details['auth'] = True
        self._give_up(reason, details)

    def _give_up(self, reason, details, disconnect_reason=None):
        """Fail the connection, end its process and close its stream (the reaper kills
        the process if it is still there REAP_PATIENCE later)."""
        self._fail(reason, details)
        self.process.terminate()
        self.stream.disconnect(disconnect_reason or reason)

    def _close_stderr(self):
        if self._stderr_open:
            self._stderr_open = False
            # What it wrote before it exited may still wait in the pipe (its exit, seen
            # first, closes stderr whether or not a grandchild holds it open).
            for _ in range(16):
                data = self._read_stderr()
                if not data:
                    break
                self._take_stderr(data)
            if self._stderr_partial:  # a last line without a newline
                self._log_stderr_lines([self._stderr_partial])
                self._stderr_partial = b''
            self.broker.stop_reading(self.process.stderr)
            os.close(self.process.stderr)
            self._check_failure_complete()
            self._report_loss_if_explained()
        self._forget_if_finished()

    def _forget_if_finished(self):
        """Leave the broker's registry of unfinished connections once stderr is closed,
        the process reaped and its loss reported (whichever comes last)."""
        if not self._stderr_open and self.process.poll() is not None and self._loss is None:
            _unreaped.get(self.broker, set()).discard(self)

    # -- ending ----------------------------------------------------------------

    def _details(self, preamble):
        stderr = to_text(self.stderr_tail)
        for prompt in self._prompt_texts:
            stderr = stderr.replace(to_text(prompt), '')
        return {'exit_status': self.process.poll() if self.process else None,
                'stderr': stderr.strip(), 'preamble': preamble, 'errno': None, 'auth': False,
                'password_asked': self._password_prompts > 0,
                'first_stage': self._first_stage_seen}

    def abort(self, reason):
        """Give up on a connection still booting, at once: fail it and kill its process
        (also once the broker's loop has ended, when no timer will run)."""
        if self.state not in ('new', 'booting'):
            return
        self._fail(reason, self._details(''))
        if self.process is not None:
            self.process.kill()

    def _fail(self, reason, details):
        if self.state in ('failed', 'ready'):
            return
        self.state = 'failed'
        self._password = None
        self._repeated = {}
        self._remove_askpass()
        if self._timer is not None:
            self._timer.cancel()
        self.on_failed(self, reason, details)

    def _remove_askpass(self):
        if self._askpass_dir is not None:
            remove_askpass(self._askpass_dir)
            self._askpass_dir = None

    def _on_disconnect(self, stream, reason):
        if (self.state == 'ready' and self.context_id not in self.router.exiting
                and (reason == 'end of file' or reason.startswith(('read failed', 'write failed')))):
            # The child went unasked (or its connection broke): its exit status and its
            # last words on stderr, which follow within milliseconds, say why.
            self._loss = (stream, reason, monotonic())
            self._await_loss_explanation(0.001)
        else:
            self.router.stream_disconnected(stream, reason)
        if self.state == 'booting':
            # Wait briefly for stderr and the exit status: they explain the failure.
            self._failure = (reason, stream)
            self.broker.call_later(1.0, self._finish_failure)
            self._check_failure_complete()
        self._reap(REAP_PATIENCE)

    def _await_loss_explanation(self, pause):
        if self._loss is None or self._report_loss_if_explained():
            return
        if monotonic() - self._loss[2] >= LOSS_PATIENCE:
            self.report_loss()
        else:
            self.broker.call_later(pause, self._await_loss_explanation, min(pause * 2, REAP_INTERVAL))

    def _report_loss_if_explained(self):
        """Report the loss once stderr is closed and the process has exited."""
        if self._loss is not None and not self._stderr_open and self.process.poll() is not None:
            self.report_loss()
        return self._loss is None

    def report_loss(self):
        """Tell the router the child is lost, with what explains it so far (at once
        when the broker's loop has ended)."""
        if self._loss is None:
            return
        stream, reason, at = self._loss
        self._loss = None
        try:
            reason = self._explained(reason, at)
        finally:  # reported whatever happens: contexts behind it must not wait for ever
            self.router.stream_disconnected(stream, reason)
            self._forget_if_finished()

    def _explained(self, reason, at):
        """reason, with the process's exit status and its last words (as text)."""
        reason = printable(reason, 300)
        status = self.process.poll()
        if status is not None:
            program = getattr(self.process, 'program', None) or os.path.basename(self.argv[0])
            ended = u'%s %s' % (printable(program, 100), describe_status(status))
            reason = ended if reason == u'end of file' else u'%s; %s' % (reason, ended)
        said = last_words(self._recent_stderr, at - RECENT_STDERR)
        if said:
            return u'%s: %s' % (reason, said)
        if status == 255 and program in ('ssh', 'the ssh session'):
            # ssh's status for a lost connection, and for a command killed by a signal,
            # for which it says nothing.
            reason += (u' (and said no more: the interpreter there was killed by a signal, as '
                       u'kill -9 or the OOM killer do, or the connection dropped)')
        return reason

    def _check_failure_complete(self):
        if self._failure is not None and not self._stderr_open and self.process.poll() is not None:
            self._finish_failure()

    def _finish_failure(self):
        if self._failure is None or self.state != 'booting':
            return
        reason, stream = self._failure
        scanner = stream.scanner
        preamble = scanner.preamble_text() if scanner is not None else ''
        details = self._details(preamble)
        self._fail('the connection closed before the interpreter started (%s, %s)'
                   % (reason, describe_status(details['exit_status'])), details)
        self._close_stderr()

    def _reap(self, patience):
        status = self.process.poll()
        if status is None:
            if patience <= 0:
                self.process.kill()
                patience = REAP_PATIENCE
            self.broker.call_later(REAP_INTERVAL, self._reap, patience - REAP_INTERVAL)
            return
        if self._failure is not None:
            self._check_failure_complete()
        else:
            self._close_stderr()
        self._report_loss_if_explained()  # stderr may have closed first
        self._forget_if_finished()  # stderr may have closed first (a failure's timer)


def reap_remaining(broker, patience):
    """Once broker's loop has ended (its timers no longer run): close the stderr of its
    connections not finished yet and reap their processes, those still running on a
    daemon thread that kills them after patience seconds, so a closed router leaves
    no zombie and no open pipe (and close() waits for none of them)."""
    running = []
    for connection in _unreaped.pop(broker, ()):
        connection.report_loss()
        if connection._stderr_open:
            connection._stderr_open = False
            os.close(connection.process.stderr)
        if connection.process.poll() is None:
            running.append(connection.process)
    if running:
        _reaping.update(running)
        start_daemon_thread(lambda: _reap(running, patience), 'transport-reaper')


# Processes a reaper thread waits for: killed if this interpreter exits first (a
# program that closes its router and ends at once), as a daemon thread is not waited for.
_reaping = set()


def _kill_reaping():
    for process in list(_reaping):
        if process.poll() is None:
            process.kill()


atexit.register(_kill_reaping)


def _reap(processes, patience):
    import time

    watched = processes
    kill_at = monotonic() + patience
    give_up_at = kill_at + 5.0  # then stop looking (a process stuck in the kernel)
    pause = 0.001
    while processes and monotonic() < give_up_at:
        time.sleep(pause)
        pause = min(pause * 2, REAP_INTERVAL)
        processes = [p for p in processes if p.poll() is None]
        if kill_at is not None and monotonic() > kill_at:
            kill_at = None
            for process in processes:
                process.kill()
    _reaping.difference_update(watched)
