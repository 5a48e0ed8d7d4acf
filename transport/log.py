"""Logging without paying for it: the logging module is imported only when needed.

Debug and info records (connections, remote stderr lines) are emitted only if
the application has imported logging already: an application that never did
could not have configured a handler to see them. Warnings and errors then go
to stderr as logging's last-resort handler would print them, without importing
logging: on one of our threads, its import would load threading there, and
Python would take that thread for the main one and wait for it at exit.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _logger(name: str) -> Any:
    import logging

    return logging.getLogger(name)


def debug(name: str, message: str, *args: Any) -> None:
    if "logging" in sys.modules:
        _logger(name).debug(message, *args)


def info(name: str, message: str, *args: Any) -> None:
    if "logging" in sys.modules:
        _logger(name).info(message, *args)


def warning(name: str, message: str, *args: Any) -> None:
    if "logging" in sys.modules:
        _logger(name).warning(message, *args)
    else:
        _last_resort(message % args)


def error(name: str, message: str, *args: Any, exc_info: Any = None) -> None:
    if "logging" in sys.modules:
        _logger(name).error(message, *args, exc_info=exc_info)
        return
    text = message % args
    if exc_info:
        import traceback

        info = sys.exc_info() if exc_info is True else exc_info
        text += "\n" + "".join(traceback.format_exception(*info)).rstrip("\n")
    _last_resort(text)


def _last_resort(text: str) -> None:
    """What logging's last-resort handler prints: the message alone, on stderr."""
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # no stderr, or closed: as logging, silent
        pass
