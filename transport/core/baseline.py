"""Changing what every later call starts from (Context.set_baseline).

fresh.py restores the working directory, environment and umask after each call;
this module, sent only when a controller first changes them, moves that
baseline. Not in the boot payload.
"""
from __future__ import absolute_import

import os

from transport.core import fresh
from transport.core.compat import PY2
from transport.core.os_strings import os_string, path_string


def set_baseline(cwd=None, env=None, umask=None):
    """Make later calls start in cwd with env applied (a None value unsets a variable)
    and umask set."""
    if cwd is not None:
        os.chdir(path_string(cwd))
    if umask is not None:
        os.umask(umask)
    for key, value in (env or {}).items():
        if value is None:
            os.environ.pop(os_string(key), None)
        elif isinstance(value, bytes) and not PY2:  # os.environ takes text only
            os.environb[os.fsencode(os_string(key))] = value
        else:
            os.environ[os_string(key)] = os_string(value)
    if fresh.current is not None:
        fresh.current.snapshot()
    return os.getcwd()
