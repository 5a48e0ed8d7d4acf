"""A reused interpreter behaves like a fresh one: resolver, directory, environment, umask."""

from __future__ import annotations

import logging
import os
import sys
import time

import pytest

from tests import remote_functions
from tests.support.interpreters import find_interpreters
from transport.core import baseline, fresh


def test_directory_changes_do_not_leak_into_the_next_call(ctx):
    start = ctx.call(os.getcwd)
    ctx.call(os.chdir, "/tmp")
    assert ctx.call(os.getcwd) == start


def test_environment_changes_do_not_leak(ctx):
    assert ctx.call(os.getenv, "TP_FRESH_TEST") is None
    ctx.call(baseline.set_baseline, None, None)  # no-op baseline refresh is allowed
    assert ctx.call(_set_env_and_read, "TP_FRESH_TEST", "1") == "1"
    assert ctx.call(os.getenv, "TP_FRESH_TEST") is None
    assert ctx.call(_unset_env, "HOME") is None
    assert ctx.call(os.getenv, "HOME") == os.environ.get("HOME")


def test_a_umask_change_does_not_leak(ctx):
    # A call's os.umask() stayed for every later call and command (files they made got
    # its modes), where a fresh process starts with the login's.
    start = ctx.run("umask").stdout
    ctx.call(os.umask, 0o077)
    assert ctx.run("umask").stdout == start
    assert ctx.call(os.umask, 0o027) == int(start, 8)
    # A umask meant to last is the baseline's.
    ctx.set_baseline(umask=0o027)
    ctx.call(os.umask, 0o077)
    assert ctx.run("umask").stdout == b"0027\n"
    with pytest.raises(ValueError, match="umask is a number from 0 to 0o777"):
        ctx.set_baseline(umask="027")


def test_baseline_keeps_what_the_caller_asked_for(ctx):
    assert ctx.set_baseline(cwd="/tmp", env={"TP_KEPT": "yes", "HOME": None}) == "/tmp"
    ctx.call(os.chdir, "/")
    assert ctx.call(os.getcwd) == "/tmp"
    assert ctx.call(os.getenv, "TP_KEPT") == "yes"
    assert ctx.call(os.getenv, "HOME") is None


def test_resolver_reloads_when_resolv_conf_changes(ctx):
    assert os.path.exists(fresh.RESOLV_CONF), "this test needs /etc/resolv.conf"
    before = ctx.call(remote_functions.resolver_reloads)
    assert ctx.call(remote_functions.resolver_reloads) == before  # unchanged file: no reload
    stat = os.stat(fresh.RESOLV_CONF)
    os.utime(fresh.RESOLV_CONF, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        assert ctx.call(remote_functions.resolver_reloads) == before + 1
    finally:
        os.utime(fresh.RESOLV_CONF, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize("python", [sys.executable, "/usr/bin/python3", "3.8", "3.6", "2.7"])
def test_what_a_call_prints_is_logged_when_it_returns(router, caplog, monkeypatch, python):
    # Both are pipes in a target, which Python buffers (stdout always, stderr before
    # 3.9): as a process's at its end, a call's buffers are flushed when it returns,
    # not when they fill or the interpreter ends (in either order, as in a process).
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # as over ssh
    ctx = router.local(python=find_interpreters().get(python, python))
    with caplog.at_level(logging.INFO, logger="transport.stderr"):
        assert ctx.call(remote_functions.print_unflushed, "on stdout", "on stderr") == "printed"
        wanted = [f"{ctx.name}: on stderr", f"{ctx.name}: on stdout"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            said = sorted(r.getMessage() for r in caplog.records if r.name == "transport.stderr")
            if said == wanted:
                break
            time.sleep(0.05)
        assert said == wanted
    assert ctx.call(os.getpid) == ctx.pid  # still running: nothing waited for its end


def _set_env_and_read(key, value):
    os.environ[key] = value
    return os.environ[key]


def _unset_env(key):
    os.environ.pop(key, None)
    return os.environ.get(key)
