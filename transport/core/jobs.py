"""Detached jobs: calls that outlive the connection that started them.

detach() forks twice from the target (the job runs in a new session, with
no controlling terminal, so it survives the connection, the ssh session and
the target itself) and closes every inherited descriptor. Being a fork, it
never uses the target's connection (Router.forked): a module that was not
preloaded fails at once with ImportError instead of waiting for a parent
that may be gone. The job writes its result, or its error with the
traceback, into its own directory under a per-user jobs directory (mode
0700); status() reads it back from any later connection as the same user.
"""
from __future__ import absolute_import

import errno
import os
import sys
import time
import warnings

from transport.core import codec, dispatch
from transport.core.compat import exit_now, text_type
from transport.core.dispatch import _exit_as_python_would, error_reply, resolve

# Python 3.12+ warns of any fork in a process with threads. This fork is the design
# (a job must outlive its connection), the child never touches the connection the
# broker thread holds (see above), and the warning names our code, which the user
# cannot act on: it is not shown, even where PYTHONWARNINGS asks for every warning.
warnings.filterwarnings('ignore', r'This process \(pid=\d+\) is multi-threaded',
                        DeprecationWarning, r'transport\.core\.jobs\Z')

DIGITS = frozenset('0123456789')
STATUS_ROOM = 64 * 1024  # what a status holds beside the result (id, function, error text)
HEX_DIGITS = frozenset('0123456789abcdef')


def is_job_id(name):
    """A job id as new_job_id() makes them: decimal digits, '-', 12 hex digits."""
    head, dash, tail = name.partition('-')
    return (bool(dash and head) and set(head) <= DIGITS and len(tail) == 12
            and set(tail) <= HEX_DIGITS)

MAX_FD = 65536


def jobs_dir():
    """The per-user jobs directory, created with mode 0700 and checked to be ours."""
    home = os.path.expanduser('~')
    base = os.path.join(home, '.transport', 'jobs')
    if not os.access(home, os.W_OK):
        base = os.path.join('/tmp', 'transport-jobs-%d' % os.getuid())
    try:
        os.makedirs(base, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    st = os.lstat(base)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OSError(errno.EPERM, 'jobs directory %s is not private to this user' % base)
    return base


def _job_path(job_id):
    if not isinstance(job_id, (str, text_type)) or not is_job_id(job_id):  # 2.7: unicode
        raise ValueError('not a job id: %r' % (job_id,))
    return os.path.join(jobs_dir(), str(job_id))  # 2.7: native, as the directory is


def _write(path, name, data):
    temporary = os.path.join(path, '.%s.tmp' % name)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(temporary, os.path.join(path, name))


def _read(path, name):
    try:
        with open(os.path.join(path, name), 'rb') as f:
            return codec.decode(f.read())
    except (IOError, OSError):
        return None


def detach(module_name, qualname, args, kwargs):
    """Start module_name.qualname(*args, **kwargs) in a detached process; return its id and pid."""
    job_id = '%d-%s' % (int(time.time()), ''.join('%02x' % b for b in bytearray(os.urandom(6))))
    # What status() may send back: a result over it could never be read.
    limit = dispatch.current.router.parent.decoder.max_message_size - STATUS_ROOM
    path = os.path.join(jobs_dir(), job_id)
    os.mkdir(path, 0o700)
    try:
        _write(path, 'meta', codec.encode({'function': '%s.%s' % (module_name, qualname),
                                           'started': time.time()}))
        for f in (sys.stdout, sys.stderr):  # what earlier calls printed is theirs, not the job's
            try:
                f.flush()
            except Exception:
                pass
        r, w = os.pipe()
        try:
            pid = os.fork()
        except BaseException:
            os.close(r)
            os.close(w)
            raise
    except BaseException:
        _remove(path)  # no record of a job that never started
        raise
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork():
                os._exit(0)
            os.write(w, str(os.getpid()).encode('ascii'))
            os.close(w)
            _run(path, module_name, qualname, args, kwargs, limit)
        finally:
            os._exit(1)
    os.close(w)
    os.waitpid(pid, 0)
    grandchild = os.read(r, 32)
    os.close(r)
    if not grandchild:  # its second fork failed
        _remove(path)
        raise OSError(errno.EAGAIN, 'the job process could not be started')
    return {'id': job_id, 'pid': int(grandchild)}


def _remove(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def _run(path, module_name, qualname, args, kwargs, limit):
    """In the detached process: run the call, record its outcome, exit.

    A process the call forks that returns here instead of exiting is not the
    job: it ends as Python would end it, and writes no result.
    """
    null = os.open(os.devnull, os.O_RDONLY)
    output = os.open(os.path.join(path, 'output'), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.closerange(3, MAX_FD)
    job_pid = os.getpid()
    _write(path, 'pid', codec.encode(job_pid))
    try:
        if sys.version_info[0] == 2 and kwargs:
            kwargs = dict((str(k), v) for k, v in kwargs.items())
        result = ('ok', resolve(module_name, qualname)(*args, **kwargs))
    except BaseException:
        result = error_reply(sys.exc_info())
    if os.getpid() != job_pid:
        _exit_as_python_would(result)
    try:
        data = codec.encode(result)
        if len(data) > limit:
            raise codec.CodecError('%d bytes, over the message size limit (write a large '
                                   'result to a file, and get that)' % len(data))
    except codec.CodecError as e:
        data = codec.encode(('err', 'transport.core.codec.CodecError',
                             'the job returned a value that cannot be sent: %s' % (e,), ''))
    _write(path, 'result', data)
    exit_now(0)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rpartition(') ')[2][:1] not in ('Z', 'X')
    except (IOError, OSError):
        return True


def status(job_id):
    """A dict: id, state ('running', 'done' or 'failed'), result, error, pid, function, started."""
    path = _job_path(job_id)
    meta = _read(path, 'meta')
    if meta is None:
        raise KeyError('no job %s here' % job_id)
    info = {'id': job_id, 'function': meta['function'], 'started': meta['started'],
            'pid': _read(path, 'pid'), 'result': None, 'error': None}
    result = _read(path, 'result')
    if result is not None:
        if result[0] == 'ok':
            info['state'], info['result'] = 'done', result[1]
        else:
            info['state'], info['error'] = 'failed', list(result[1:])
    elif info['pid'] is None or _alive(info['pid']):
        info['state'] = 'running'
    else:
        info['state'] = 'failed'
        info['error'] = ['transport.JobLost', 'the job process ended without a result', '']
    return info


def job_ids():
    """The names in this user's jobs directory, oldest first (see status_if_any)."""
    return sorted(os.listdir(jobs_dir()))


def status_if_any(job_id):
    """status(job_id), or None where there is no job record (not a job's, or
    forgotten meanwhile)."""
    try:
        return status(job_id)
    except (KeyError, ValueError):
        return None


def forget(job_id):
    """Remove a job's record (a running job keeps running)."""
    import shutil
    shutil.rmtree(_job_path(job_id))
    return True
