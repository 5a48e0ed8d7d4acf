"""Running the functions that CALL_FUNCTION messages name.

A call names a function by module and qualified name, never by code, so the
target runs only what it can import. Calls run one at a time on the thread
that calls Dispatcher.run() (the main thread of a target); the broker thread
only queues them. Every reply is ('ok', value) or ('err', type name, message,
traceback text).
"""
from __future__ import absolute_import

import itertools
import sys

from transport.core import codec, fresh
from transport.core.compat import PY2, SimpleQueue, exit_now
from transport.core.framing import Message

# How long a reply may wait for the replies after it while calls are queued.
REPLY_LINGER = 0.001

_BUILTINS_ALIAS = {'builtins': '__builtin__'} if PY2 else {'__builtin__': 'builtins'}


def resolve(module_name, qualname):
    """Import module_name and walk qualname to the function it names."""
    module_name = _BUILTINS_ALIAS.get(module_name, module_name)
    module = sys.modules.get(module_name)
    if module is None:
        __import__(module_name)
        module = sys.modules[module_name]
    obj = module
    for part in qualname.split('.'):
        obj = getattr(obj, part)
    return obj


def error_reply(exc_info):
    """Encode an exception as an error reply tuple, traceback included."""
    exc_type, exc_value = exc_info[0], exc_info[1]
    type_name = exc_type.__name__
    module = getattr(exc_type, '__module__', None)
    if module and module not in ('builtins', '__builtin__', 'exceptions'):
        type_name = '%s.%s' % (module, type_name)
    try:
        message = '%s' % (exc_value,)
    except Exception:
        try:
            message = unicode(exc_value) if PY2 else repr(exc_value)  # noqa: F821
        except Exception:
            message = '<unprintable %s>' % type_name
    try:
        import traceback  # a call may have emptied sys.path
        lines = traceback.format_exception(*exc_info)
        if PY2:
            # Source lines of forwarded modules are text, an error's message may be
            # UTF-8 bytes: joined as they are, they would fail.
            lines = fold_repeats([line if isinstance(line, unicode) else  # noqa: F821
                                  line.decode('utf-8', 'replace') for line in lines])
        text = ''.join(lines)
    except Exception:  # never the end of the process that reports it
        text = '(the traceback could not be formatted)\n'
    return ('err', type_name, message, text)


def fold_repeats(lines):
    """Python 3's folding of a traceback's repeated frames, for Python 2.7, whose
    tracebacks show a runaway recursion's frame a thousand times: three copies
    stay, then '[Previous line repeated N more times]'."""
    folded = []
    for line, copies in itertools.groupby(lines):
        count = len(list(copies))
        folded += [line] * min(count, 3)
        if count > 3:
            folded.append('  [Previous line repeated %d more times]\n' % (count - 3))
    return folded


# The Dispatcher of this process, for functions that talk back during a call.
current = None


def send_to_caller(handle, data):
    """From inside a call: send data (bytes) to `handle` in the context that made the call."""
    dispatcher = current
    dispatcher.router.send(Message(dispatcher.caller, dispatcher.router.context_id, handle, data))


class AskError(Exception):
    """An ask got no answer: the other side refused, went away or did not answer in time."""


def ask_caller(handle, value, timeout=60.0):
    """From inside a call: ask the service the caller registered at `handle` (Context.serve).

    Returns the decoded answer; raises AskError when the service refuses (its
    error text), the caller is lost, or timeout passes.
    """
    dispatcher = current
    if dispatcher.router.forked():  # before the import, which would ask the parent
        raise AskError('the caller cannot be asked from a forked process')
    from transport.core.asking import ask  # on demand: not in the boot payload
    return ask(dispatcher.router, dispatcher.caller, handle, value, timeout, 'the caller')


def _exit_as_python_would(result):
    """End a forked child with its status: 0, sys.exit's, or 1 after its traceback."""
    code = 0
    if result[0] == 'err':
        code = 1
        if result[1] == 'SystemExit':
            code = int(result[2]) if result[2].isdigit() else result[2] != 'None'
        else:
            sys.stderr.write(result[3])
    exit_now(code)


class Dispatcher(object):
    """Queue of calls from the broker thread, run on the thread that calls run()."""

    def __init__(self, router):
        global current
        current = self
        self.router = router
        self.caller = None
        self.queue = SimpleQueue()
        self.baseline = fresh.current = fresh.Baseline()

    def enqueue(self, msg):
        self.queue.put(msg)

    def stop(self):
        self.queue.put(None)

    def run(self):
        """Run calls until stop(); returns then."""
        get = self.queue.get
        while True:
            msg = None
            try:
                msg = get()
                if msg is None:
                    return
                self.caller = msg.src
                reply = self.run_one(msg.data)
            except SystemExit:  # a handler a call installed ends this process
                raise
            except BaseException:  # from a signal handler or another thread: not our end
                if msg is None:
                    continue
                reply = codec.encode(error_reply(sys.exc_info()))
            # With more calls waiting, replies wait up to REPLY_LINGER to be
            # written together; the reply that empties the queue goes at once.
            self.router.send(Message(msg.src, self.router.context_id, msg.reply_to, reply),
                             flush=self.queue.empty(), linger=REPLY_LINGER)

    def run_one(self, data):
        """Run the call encoded in data; return the encoded reply."""
        self.baseline.before_call()
        try:
            module_name, qualname, args, kwargs = codec.decode(data)
            fn = resolve(module_name, qualname)
            if PY2 and kwargs:
                kwargs = dict((str(k), v) for k, v in kwargs.items())
            result = ('ok', fn(*args, **kwargs))
        except BaseException:
            result = error_reply(sys.exc_info())
        if self.router.forked():  # the child of a call's fork() came back here: it ends
            _exit_as_python_would(result)
        self.baseline.after_call()
        try:
            data = codec.encode(result)
            if len(data) > self.router.parent.decoder.max_message_size:  # it would cut us off
                raise codec.CodecError('%d bytes, over the message size limit' % len(data))
            return data
        except codec.CodecError as e:
            return codec.encode(('err', 'transport.core.codec.CodecError',
                                 'the function returned a value that cannot be sent: %s' % (e,),
                                 ''))
