"""Logging without paying for it: the logging module is imported only when needed.

Debug and info records (connections, remote stderr lines) are emitted only if
the application has imported logging already: an application that never did
could not have configured a handler to see them. Warnings and errors always
import it, so they reach logging's last-resort handler at least.
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
    _logger(name).warning(message, *args)


def error(name: str, message: str, *args: Any, exc_info: Any = None) -> None:
    _logger(name).error(message, *args, exc_info=exc_info)
