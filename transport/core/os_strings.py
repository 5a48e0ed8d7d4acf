"""Text for the operating system (paths, arguments, environment) on any target Python.

The file system encoding says how an interpreter turns text into the bytes
the system takes. Python 3.7+ under the C locale uses UTF-8 (PEP 538 and
540); Python 2.7 and 3.6 use ASCII there (ssh sessions with no locale, cron,
CentOS 7's python3), so a name such as "caf\u00e9" would fail. os_string()
gives them what every other program on the system uses: UTF-8 bytes. A path
given for a transfer or a command's directory may also start with a home
(path_string). Not in the boot payload: it travels with the modules that use it.
"""
from __future__ import absolute_import

import os
import sys

from transport.core.compat import PY2

FS_ENCODING = sys.getfilesystemencoding() or 'ascii'

if PY2:
    def os_string(value):
        """value as this interpreter's os functions take it (2.7: a native str)."""
        if not isinstance(value, unicode):  # noqa: F821 (Python 2 only)
            return value
        try:
            return value.encode(FS_ENCODING)
        except (UnicodeError, LookupError):
            return value.encode('utf-8')
else:
    def os_string(value):
        """value as this interpreter's os functions take it: text its file system
        encoding cannot encode becomes text that encodes to value's UTF-8 bytes."""
        if not isinstance(value, str):
            return value
        try:
            value.encode(FS_ENCODING, 'surrogateescape')
            return value
        except UnicodeEncodeError:
            return value.encode('utf-8', 'surrogateescape').decode(FS_ENCODING, 'surrogateescape')


def path_string(value):
    """A path given to put, get or a command's cwd, as os functions take it: '~' or
    '~user' at its start is that home, as scp and a shell take it."""
    value = os_string(value)
    return os.path.expanduser(value) if value[:1] in ('~', b'~') else value
