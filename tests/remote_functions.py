"""Functions the tests call in targets. Written in the syntax of Python 2.7 and 3.6+.

Targets import this module by name from the working directory (the
repository root), which every local target inherits.
"""
import os
import sys
import time


def echo(*args, **kwargs):
    return [list(args), kwargs]


def ignore(*args, **kwargs):
    return None


def fail(message):
    raise ValueError(message)


def nested_fail():
    return fail("nested " + "failure")


def recurse(depth):
    return recurse(depth + 1) + 1


def sleep_then_return(seconds, value):
    time.sleep(seconds)
    return value


def wait_for_path(path, value, limit=60):
    """Return value once path exists (the caller's go-ahead), or after limit seconds."""
    deadline = time.time() + limit
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.01)
    return value


def pid_and_ppid():
    return os.getpid(), os.getppid()


def version():
    return list(sys.version_info[:3])


def named_entry():
    """A named tuple with more fields than a 2.7 dict keeps in order."""
    import collections
    return collections.namedtuple("Entry", "name size owner mode mtime")("a", 1, "root", 420, 0)


def ordered_mapping():
    """An OrderedDict whose order is not its keys' hash order."""
    import collections
    return collections.OrderedDict((key, len(key)) for key in ("zeta", "alpha", "mid", "b"))


def print_noise(text):
    sys.stdout.write(text)
    sys.stdout.flush()
    os.write(1, text.encode() if not isinstance(text, bytes) else text)
    return "after noise"


def print_unflushed(out, err):
    print(out)
    sys.stderr.write(err + "\n")
    return "printed"


def make_bytes(size):
    return b"\xab" * size


def length(data):
    return len(data)


class Evil(object):
    """An object whose unpickling would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch %s" % self.marker,))


def return_evil(marker):
    return Evil(marker)


def exit_hard(status, last_words=None):
    if last_words is not None:
        os.write(2, last_words.encode("utf-8"))
    os._exit(status)


class Greeter(object):
    @classmethod
    def hello(cls, name):
        return "hello " + name

    @staticmethod
    def bye(name):
        return "bye " + name

    def instance_method(self):
        return "instance"


def render(template, **values):
    import jinja2
    return jinja2.Template(template).render(**values)


def in_a_fork(fn):
    """Run fn() in a forked child and return the text it returns ('' if it raised)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.write(write_end, fn().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    try:
        return os.read(read_end, 4096).decode()
    finally:
        os.close(read_end)


def fork_log_and_import(name):
    """Fork; the child logs a record and imports name (which this target lacks).

    Returns what the child's import did: 'imported' or 'ImportError'.
    """
    import logging

    def child():
        logging.getLogger("tp.fork").warning("from the fork")
        try:
            __import__(name)
            return "imported"
        except ImportError:
            return "ImportError"

    return in_a_fork(child)


def import_after_a_lost_request(name):
    """Lose this target's first request for module name, then import it twice (the
    first import waits 0.5 s for an answer, the second the usual time); return what
    each import did."""
    from transport.core import forwarding
    from transport.core.handles import GET_MODULE
    forwarder = forwarding.installed
    router = forwarder.router
    real_send, real_timeout = router.send, forwarder.timeout
    lost = []

    def send(msg, *args, **kwargs):
        if msg.handle == GET_MODULE and not lost:
            lost.append(msg)  # as if the parent had dropped it
            return None
        return real_send(msg, *args, **kwargs)

    router.send, forwarder.timeout = send, 0.5
    outcomes = []
    try:
        for _ in range(2):
            try:
                __import__(name)
                outcomes.append("imported")
            except ImportError:
                outcomes.append("ImportError")
            # A cold controller may take longer than 0.5 s to scan what it sends.
            forwarder.timeout = real_timeout
    finally:
        router.send, forwarder.timeout = real_send, real_timeout
    return outcomes


def lose_the_next_module_request(patience):
    """Drop this context's next request for a module to its parent (as if the parent had
    dropped it), and wait `patience` seconds for answers from now on."""
    from transport.core import forwarding
    from transport.core.handles import GET_MODULE
    forwarder = forwarding.installed
    router = forwarder.router
    real_send = router.send

    def send(msg, *args, **kwargs):
        if msg.handle == GET_MODULE:
            router.send = real_send
            return None
        return real_send(msg, *args, **kwargs)

    router.send, forwarder.timeout = send, patience
    return True


def import_with_patience(name, patience):
    """Import name, waiting at most `patience` seconds for the parent; what it did."""
    from transport.core import forwarding
    forwarder = forwarding.installed
    real_timeout, forwarder.timeout = forwarder.timeout, patience
    try:
        __import__(name)
        return "imported"
    except ImportError:
        return "ImportError"
    finally:
        forwarder.timeout = real_timeout


def import_by_name(name):
    import importlib
    return importlib.import_module(name).__name__


def call_by_name(module, function):
    import importlib
    return getattr(importlib.import_module(module), function)()


def compiles_while_importing(name):
    """Import module name; return the file names compile() was asked for meanwhile (a
    module forwarded as byte code for this interpreter is not compiled here)."""
    try:
        import builtins
    except ImportError:  # 2.7
        import __builtin__ as builtins
    import importlib
    compiled = []
    real_compile = builtins.compile

    def counting(source, filename, *args, **kwargs):
        compiled.append(filename)
        return real_compile(source, filename, *args, **kwargs)

    builtins.compile = counting
    try:
        importlib.import_module(name)
    finally:
        builtins.compile = real_compile
    return compiled


def log_message(level, text):
    import logging
    logging.getLogger("tp.app").log(level, text)
    return True


def ask_caller(handle, values):
    """Ask the caller's service about each value; the answers, or the error texts."""
    from transport.core import dispatch
    answers = []
    for value in values:
        try:
            answers.append(dispatch.ask_caller(handle, value, timeout=10))
        except dispatch.AskError as e:
            answers.append("refused: %s" % (e,))
    return answers


def core_payload_kinds():
    """How the core reached this target: ['c'] as byte code, ['s'] as source."""
    import sys
    for finder in sys.meta_path:
        if type(finder).__name__ == "MemoryImporter":
            return sorted(set(kind.decode("ascii") for kind, _ in finder.modules.values()))
    return []


def main_thread_as_applications_see_it():
    """What an application importing threading in a call finds: whether it runs on the main
    thread, whether the interpreter had threading loaded already, and whether asyncio may
    install a signal handler (main thread only)."""
    import signal
    preloaded = "threading" in sys.modules
    import asyncio
    import threading
    loop = asyncio.new_event_loop()
    try:
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        loop.remove_signal_handler(signal.SIGUSR1)
    finally:
        loop.close()
    return threading.current_thread() is threading.main_thread(), preloaded


# -- a compromised target: forged messages sent from inside a call ------------------------

def _own_router():
    from transport.core import dispatch
    return dispatch.current.router


def forge_del_route(context_ids, reason):
    """Claim to the controller that context_ids are gone."""
    from transport.core import codec
    from transport.core.framing import Message
    from transport.core.handles import DEL_ROUTE
    router = _own_router()
    router.send(Message(0, router.context_id, DEL_ROUTE, codec.encode((list(context_ids), reason))))
    time.sleep(0.2)
    return True


def forge_dead_notices(first_handle, last_handle):
    """Send 'context gone' notices to every handle in a range on the controller."""
    from transport.core.framing import Message
    from transport.core.handles import FLAG_DEAD
    router = _own_router()
    for handle in range(first_handle, last_handle):
        router.send(Message(0, router.context_id, handle, b'forged', flags=FLAG_DEAD))
    time.sleep(0.2)
    return True


def answer_next_call_with_a_dict():
    """Make this target's next reply a dict instead of a reply tuple."""
    from transport.core import codec, dispatch
    dispatcher = dispatch.current
    original = dispatcher.run_one

    def run_one(data):
        dispatcher.run_one = original
        return codec.encode({})
    dispatcher.run_one = run_one
    return True


def ask_for_a_huge_module_name(size):
    from transport.core import codec
    from transport.core.framing import Message
    from transport.core.handles import GET_MODULE
    router = _own_router()
    router.send(Message(0, router.context_id, GET_MODULE, codec.encode('m' * size)))
    time.sleep(0.2)
    return True


def ask_the_controller(handle, value):
    """Send value to the controller's well-known handle (GET_MODULE, GET_RESOURCE) as
    this target's own request, and return the answer's kinds: for a module list, each
    entry's kind; for a resource, its first item."""
    from transport.core import codec, forwarding
    from transport.core.compat import SimpleQueue
    from transport.core.framing import Message
    from transport.core.handles import GET_RESOURCE
    router = _own_router()
    answers = SimpleQueue()
    reply_to = router.add_reply_handler(answers.put, 0)
    router.send(Message(0, router.context_id, handle, codec.encode(value), reply_to=reply_to))
    data = answers.get(timeout=30).data
    if handle == GET_RESOURCE:
        return codec.decode(data)[0]
    return [entry[1] for entry in forwarding.unpack_entries(data)]


def acknowledge_the_next_put_at_once(count):
    """Make this target acknowledge count bytes of its next put before any arrive."""
    from transport.core import codec, files
    from transport.core.dispatch import send_to_caller
    original = files.start_receive

    def start_receive(path, size, mode, ack_handle, in_place=False):
        files.start_receive = original
        send_to_caller(ack_handle, codec.encode(count))
        return original(path, size, mode, ack_handle, in_place)
    files.start_receive = start_receive
    return True


def ask_for_made_up_modules(count):
    """Ask the controller for count modules no one has, all at once."""
    from transport.core import codec
    from transport.core.framing import Message
    from transport.core.handles import GET_MODULE
    router = _own_router()
    for number in range(count):
        router.send(Message(0, router.context_id, GET_MODULE, codec.encode('made_up_%d' % number)))
    time.sleep(0.5)
    return True


def answer_the_next_call_as_gone(reason):
    """Answer the call after this one with a dead reply (a 'context gone' notice) giving reason."""
    from transport.core.framing import Message
    from transport.core.handles import FLAG_DEAD
    router = _own_router()
    replies = []

    def send(msg, *args, **kwargs):
        replies.append(msg)
        if len(replies) == 2:  # the first is this call's own reply
            del router.send
            msg = Message(msg.dst, msg.src, msg.handle, reason.encode(), flags=FLAG_DEAD)
        return type(router).send(router, msg, *args, **kwargs)
    router.send = send
    return True


def make_commands_hang():
    """Make this target's command runner say a command started, then never answer."""
    import transport.core.commands as commands
    from transport.core import codec
    from transport.core.dispatch import send_to_caller

    def run(cmd, shell, env, cwd, stdin_data, timeout, output_handle, use_pty=False):
        send_to_caller(output_handle, codec.encode((commands.STARTED, b'')))
        time.sleep(3600)
    commands.run = run
    return True


def make_connect_answer_with_a_bad_hello():
    """As an intermediary, answer CONNECT with a hello that is not a dict."""
    import transport.core.spawn as spawn

    def start_child(router, spec, reply):
        reply(('ok', 5))
    spawn.start_child = start_child
    return True


def send_refused_messages(count, handle=None, data=b'x'):
    """Send messages the controller must refuse: a call addressed to it, or data its
    handler for handle cannot read."""
    from transport.core.framing import Message
    from transport.core.handles import CALL_FUNCTION
    router = _own_router()
    for _ in range(count):
        router.send(Message(0, router.context_id, handle or CALL_FUNCTION, data))
    time.sleep(0.2)
    return True


def report_job_statuses_as(status):
    """From now on, every job status this target reports is `status`."""
    from transport.core import jobs

    jobs.status = lambda job_id: status
    return True


def send_raw_log_record(levelno, name, text):
    """Send (levelno, name, text) to the caller's log forwarding handle, as is."""
    import logging

    from transport.core import codec, logs
    from transport.core.framing import Message
    handler = next(h for h in logging.getLogger().handlers
                   if isinstance(h, logs.ForwardingHandler))
    handler.router.send(Message(handler.caller, handler.router.context_id,
                                handler.target_handle, codec.encode((levelno, name, text))))
    time.sleep(0.2)
    return True


def log_under_many_names(count):
    import logging
    for i in range(count):
        logging.getLogger('made.up.%d' % i).warning('record %d', i)
    time.sleep(0.2)
    return True


def stop_reading_and_ask_for(module_name, count):
    """Stop reading from the parent, then ask for the same module count times."""
    from transport.core import codec
    from transport.core.framing import Message
    from transport.core.handles import GET_MODULE
    router = _own_router()
    router.broker.defer(router.broker.stop_reading, router.parent.rfd)
    time.sleep(0.2)
    for _ in range(count):
        router.send(Message(0, router.context_id, GET_MODULE, codec.encode(module_name),
                            reply_to=5000), flush=False)
    router.send(Message(0, router.context_id, GET_MODULE, codec.encode(module_name), reply_to=5000))
    return True


def stop_reading_and_send_large_requests(module_name, count, size, large):
    """Stop reading from the parent, ask for module_name count times (the answers pile
    up unread), then send `large` module requests of `size` bytes each."""
    from transport.core import codec
    from transport.core.framing import Message
    from transport.core.handles import GET_MODULE
    stop_reading_and_ask_for(module_name, count)
    router = _own_router()
    data = codec.encode('m' * size)
    for _ in range(large):
        router.send(Message(0, router.context_id, GET_MODULE, data, reply_to=5000))
    return True


def start_in_the_background(marker):
    """Start a process that outlives the call, its output left as the interpreter's, as
    a function starting a service would; and one that writes on that stderr and ends."""
    import subprocess
    subprocess.Popen(['sh', '-c', 'exec sleep %s' % marker])
    return subprocess.call(['sh', '-c', 'echo "from a child" >&2'])


def write_escapes_and_fake_lines():
    """Write escape sequences on stderr and log a record whose text has them and a line
    that reads like the controller's own."""
    import logging
    import os
    os.write(2, b'innocent \x1b]0;retitled\x07\x1b[2J\x1b[31mred\rover\r\n')
    logging.getLogger('app').error('first\n\x1b[2Jtransport: web2: connected')
    return True


def ask_parent_for_a_huge_module_name(size):
    """As a child of an intermediary, ask it (not the controller) for a made-up module."""
    from transport.core import codec
    from transport.core.framing import Message
    from transport.core.handles import GET_MODULE
    router = _own_router()
    router.send(Message(router.parent_id, router.context_id, GET_MODULE, codec.encode('m' * size)))
    time.sleep(0.2)
    return True


def longest_cached_module_name():
    """The longest name in this context's module forwarding cache."""
    forwarder = [f for f in sys.meta_path if type(f).__name__ == 'ModuleForwarder'][0]
    return max(len(name) for name in forwarder.entries) if forwarder.entries else 0


def end_the_loop_while_a_command_runs(pid_file):
    """Start a command as Context.run does (its own process group, counted as running),
    then end this target's broker loop as a failure would (no reply gets out)."""
    import subprocess

    from transport.core import commands
    proc = subprocess.Popen(["sh", "-c", "echo $$ > %s; exec sleep 600" % pid_file],
                            preexec_fn=os.setsid)
    commands.running[proc.pid] = None  # no caller waits for its output
    deadline = time.time() + 30
    while time.time() < deadline and not (os.path.exists(pid_file) and open(pid_file).read()):
        time.sleep(0.01)  # the command is under way
    broker = _own_router().broker
    broker.defer(broker.stop)


def signal_the_next_command_as_it_starts(signum):
    """Make the next command this target runs get signum sent while it is being started."""
    from transport.core import commands
    real_start = commands._start

    def start(*args):
        commands._start = real_start
        commands.signal_running(signum)
        return real_start(*args)
    commands._start = start
    return True


def limit_file_size(size):
    """Make writes past size bytes fail in this process (EFBIG), as on a full disk."""
    import resource
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return True


def exchange(port, data, address='127.0.0.1'):
    """On the target: send data to port on its loopback, half-close, return all it reads
    back (None if the connection is refused)."""
    import socket
    import threading
    try:
        s = socket.create_connection((address, port), 30)
    except socket.error:
        return None
    s.settimeout(60)

    def send():
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send)
    sender.start()
    received = []
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            received.append(chunk)
    except socket.error:
        pass
    sender.join()
    s.close()
    from transport.core.compat import binary  # bytes, not text, from Python 2 too
    return binary(b''.join(received))


def listening_uid(port):
    """On the target: the uid owning the socket listening on port (from /proc/net/tcp)."""
    with open('/proc/net/tcp') as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(':')[1], 16) == port and fields[3] == '0A':
                return int(fields[7])
    return None


def flood_tunnel(handle, total):
    """A hostile target: send `total` bytes of tunnel data to handle in the caller,
    ignoring the window."""
    from transport.core import codec
    from transport.core.compat import binary
    from transport.core.dispatch import send_to_caller
    chunk = codec.encode((0, binary(b'x' * 65536)))
    for _ in range(total // 65536):
        send_to_caller(handle, chunk)
    return True


def resolver_reloads():
    """How many times this target made libc re-read /etc/resolv.conf (see core/fresh.py)."""
    from transport.core import fresh
    return fresh.current.resolver_reloads


def raise_from_a_signal_handler_later(seconds):
    """Arm SIGALRM with a handler that raises: it fires after this call, between calls."""
    import signal

    def handler(signum, frame):
        raise RuntimeError("raised between calls")

    signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    return True


def empty_sys_path():
    del sys.path[:]
    return True


class ChangingList(list):
    """A list whose iteration fails, as a dict changed by another thread does."""

    def __iter__(self):
        raise RuntimeError("changed size during iteration")


def changing_list():
    return ChangingList([1, 2])


def set_signal(signum, disposition):
    """signal.signal(signum, SIG_DFL or SIG_IGN), as a CLI module may at import."""
    import signal
    signal.signal(signum, {"default": signal.SIG_DFL, "ignore": signal.SIG_IGN}[disposition])
    return True


def log_long_message(level, size):
    import logging
    logging.getLogger("tp.app").log(level, "x" * size)
    return True


def fork_and_end_the_child(how):
    """Fork; the child leaves this function as `how` says and so returns to the call
    loop; the child's exit status as the parent sees it."""
    pid = os.fork()
    if pid == 0:
        if how == "return":
            return "the child's value"
        if how == "raise":
            raise RuntimeError("in the child")
        sys.exit(how)
    return os.waitpid(pid, 0)[1] >> 8


def exit_on_sigterm():
    """Install a SIGTERM handler that ends this process as a Python program's would."""
    import signal

    def handler(signum, frame):
        sys.exit(0)

    signal.signal(signal.SIGTERM, handler)
    return True


def write_at_exit(path, text):
    """Register exit handlers: one that writes text to path, then one that fails (run
    first: handlers run last-in, first-out)."""
    import atexit

    def write():
        with open(path, "w") as f:
            f.write(text)

    def fail():
        raise RuntimeError("an exit handler failed")

    atexit.register(write)
    atexit.register(fail)
    return True


def import_in(directory, name):
    """Import module `name` with `directory` as the current directory; where it came from."""
    previous = os.getcwd()
    os.chdir(directory)
    try:
        return __import__(name).__file__
    finally:
        os.chdir(previous)


def answer_connects_with(reply):
    """Make this intermediary answer every CONNECT with reply, starting nothing."""
    from transport.core import spawn

    spawn.start_child = lambda router, spec, answer: answer(reply)
    return True


def answer_next_call_with(reply):
    """Make this target's next reply `reply`, whatever the call (a hostile target)."""
    from transport.core import codec, dispatch
    dispatcher = dispatch.current
    original = dispatcher.run_one

    def run_one(data):
        dispatcher.run_one = original
        return codec.encode(reply)
    dispatcher.run_one = run_one
    return True


def report_exit_statuses_as(status):
    """From now on, every command here reports `status` as its exit status."""
    from transport.core import commands

    honest_run = commands.run

    def run(*args, **kwargs):
        honest_run(*args, **kwargs)
        return status

    commands.run = run
    return True


def flood_put_acknowledgements(count, size):
    """Make this target's next put send `count` messages of `size` bytes to its
    acknowledgement handle before it answers (a target filling the controller)."""
    from transport.core import files
    from transport.core.dispatch import send_to_caller

    honest_start = files.start_receive

    def start_receive(path, size_, mode, ack_handle, in_place=False):
        files.start_receive = honest_start
        for _ in range(count):
            send_to_caller(ack_handle, b"\0" * size)
        return honest_start(path, size_, mode, ack_handle, in_place)

    files.start_receive = start_receive
    return True


def report_stat_modes_as(mode):
    """From now on, files.path_stat here claims every file has `mode`."""
    import os

    from transport.core import files

    files.path_stat = lambda path: (mode,) + tuple(os.stat(path))[1:10]
    return True


def report_file_modes_as(mode):
    """From now on, files.send here claims every file has `mode` (a target lying to a get)."""
    from transport.core import files

    honest_send = files.send

    def send(path, data_handle, window):
        sent, _ = honest_send(path, data_handle, window)
        return sent, mode

    files.send = send
    return True


def name_put_data_handle(handle):
    """From now on, files.start_receive here answers `handle` (a target steering a put's
    data elsewhere)."""
    from transport.core import files

    files.start_receive = lambda *args: handle
    return True


def name_get_acknowledgements(handle):
    """From now on, files.send here asks for acknowledgements at `handle`, then sends one
    byte (a target steering a get's acknowledgements elsewhere)."""
    from transport.core import codec, files
    from transport.core.dispatch import send_to_caller

    def send(path, data_handle, window):
        send_to_caller(data_handle, codec.encode(("ack", handle)))
        send_to_caller(data_handle, codec.encode(("data", b"x")))
        return 1, 0o644

    files.send = send
    return True


def announce_accepted_tunnels_as(handle):
    """Make this target's forward_remote listeners announce each connection they accept
    as `handle` (closing it), as a hostile target would."""
    from transport.core import tunnels

    class Announced:
        def __init__(self, conn):
            self.handle = handle
            conn.close()

    tunnels._end = lambda router, caller, conn, await_peer=False: Announced(conn)
    return True


def send_tunnel_words_of(data):
    """Make this target's connect service accept every request, then send the caller's
    end `data` as the first word, raw (a hostile target), connecting nothing."""
    from transport.core import codec, tunnels
    from transport.core.framing import Message

    def answer(router, msg):
        _host, _port, peer = codec.decode(msg.data)
        own = router.add_parent_handler(lambda msg: None)
        router.send(Message(msg.src, router.context_id, msg.reply_to, codec.encode(("ok", own))))
        router.send(Message(msg.src, router.context_id, peer, data))

    tunnels._connect = answer
    return True


def name_the_connect_service(handle):
    """Make this target's connect service answer `handle` as its own (a hostile target)."""
    from transport.core import tunnels

    tunnels.connector = lambda: handle
    return True


def answer_tunnel_connects_with(reply):
    """Make this target's connect service answer every request with reply (as a hostile
    target would), connecting nothing."""
    from transport.core import codec, tunnels
    from transport.core.framing import Message

    def answer(router, msg):
        router.send(Message(msg.src, router.context_id, msg.reply_to, codec.encode(reply)))

    tunnels._connect = answer
    return True


def name_input_handles(handle):
    """Make this target's started commands say their input and terminal sizes go to handle."""
    from transport.core import commands

    tell = commands._LiveInput._tell

    def telling(self, kind, value):
        if kind in (commands.INPUT_READY, commands.INPUT_TERMINAL):
            value = handle
        tell(self, kind, value)

    commands._LiveInput._tell = telling
    return True


def name_output_acknowledgements(handle):
    """Make this target's commands ask for their output's acknowledgements at handle."""
    from transport.core import commands

    tell = commands._Output.tell

    def telling(self, value):
        if value[0] == commands.ACKS:
            value = (commands.ACKS, handle)
        tell(self, value)

    commands._Output.tell = telling
    return True
