"""Checking a preload: which of the modules sent ahead this process does not have.

Context.preload() sends modules ahead, then asks unavailable() about them
on the same stream, so the answer comes after they arrived. Not in the boot
payload: it travels with that first question.
"""
from __future__ import absolute_import

from transport.core import forwarding


def unavailable(names):
    """Of names (preloaded modules), those not in this process's module cache."""
    forwarder = forwarding.installed
    cache = forwarder.entries if forwarder is not None else {}
    return [name for name in names
            if name not in cache or cache[name][1] == 'missing']
