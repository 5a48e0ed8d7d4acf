"""Preload and detached jobs: work that outlives its connection."""

from __future__ import annotations

import os
import signal
import textwrap
import time

import pytest

import transport
from tests.support.interpreters import find_interpreters
from tests.support.packages import importable_tree

JOB_PACKAGE = {
    "jobpkg/__init__.py": "",
    "jobpkg/work.py": textwrap.dedent("""
        import time
        import jobdep


        def slow_double(x, delay):
            time.sleep(delay)
            return jobdep.double(x)


        def import_late(name):
            import importlib
            return importlib.import_module(name).__name__


        def listed_modules(name):
            import importlib
            import pkgutil
            return [found[1] for found in pkgutil.iter_modules(importlib.import_module(name).__path__)]


        def imports_may_ask_a_parent():
            import sys
            return [f.can_ask() for f in sys.meta_path
                    if type(f).__name__ == "ModuleForwarder"]


        def fail():
            raise KeyError("job failure")


        def sized(size):
            return b"x" * size


        def say(text):
            print(text)  # not flushed: the interpreter's stdout is a pipe
            return text


        def fork_and_fail_in_child():
            import os
            pid = os.fork()
            if pid == 0:
                raise RuntimeError("failed in the child")
            return os.waitpid(pid, 0)[1] >> 8
    """),
    "jobdep.py": "def double(x):\n    return 2 * x\n",
    "jobdata/__init__.py": textwrap.dedent("""
        import pkgutil


        def read(name):
            return pkgutil.get_data(__name__, name).decode()
    """),
    "jobdata/templates/motd.txt": "welcome\n",
    "jobextra.py": "X = 1\n",
    "jobwhole/__init__.py": "",
    "jobwhole/plugin_a.py": "NAME = 'a'\n",
    "jobwhole/plugin_b.py": "NAME = 'b'\n",
}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    import importlib

    root = tmp_path_factory.mktemp("jobs")
    os.chmod(root, 0o755)
    with importable_tree(root, JOB_PACKAGE, "job"):
        yield importlib.import_module("jobpkg.work")


def _ssh(router, sshd):
    return router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", python="/usr/bin/python3",
                      ssh_options=sshd.ssh_options())


def _wait_done(ctx, job_id, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        status = ctx.job(job_id)
        if status.state != "running" or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_detached_job_survives_a_killed_connection(sshd, work):
    with transport.Router() as router:
        ctx = _ssh(router, sshd)
        job = ctx.detach(work.slow_double, 21, 2.0)
        assert ctx.job(job.id).state == "running"
        connection = router._connections[ctx.context_id]
        os.kill(connection.process.pid, signal.SIGKILL)  # kill -9 the ssh client
        deadline = time.monotonic() + 30
        while ctx.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not ctx.alive
    with transport.Router() as router:
        again = _ssh(router, sshd)
        status = _wait_done(again, job.id)
        assert status.state == "done", status.error
        assert status.result == 42
        assert status.function == "jobpkg.work.slow_double"
        assert job.id in [j.id for j in again.jobs()]
        again.forget(job.id)
        assert job.id not in [j.id for j in again.jobs()]


def test_detaching_shows_no_fork_warning_even_where_every_warning_is_asked_for(
        work, monkeypatch, caplog):
    # Python 3.12+ warns of a fork in a process with threads; the target has them.
    monkeypatch.setenv("PYTHONWARNINGS", "always")
    caplog.set_level("INFO", logger="transport.stderr")
    with transport.Router() as router:
        ctx = router.local(python=find_interpreters()["3.13"])
        job = ctx.detach(work.slow_double, 2, 0)
        assert _wait_done(ctx, job.id).result == 4
        ctx.call(work.say, "flushed")  # what the target printed has reached the log
        ctx.forget(job.id)
    assert "flushed" in caplog.text
    assert "multi-threaded" not in caplog.text and "fork" not in caplog.text


def test_a_jobs_output_holds_what_the_job_printed_only(router, sshd, work):
    ctx = _ssh(router, sshd)
    assert ctx.call(work.say, "printed by an earlier call") == "printed by an earlier call"
    job = ctx.detach(work.say, "printed by the job")
    assert _wait_done(ctx, job.id).state == "done"
    with open(f"/home/tp-plain/.transport/jobs/{job.id}/output") as f:
        assert f.read() == "printed by the job\n"
    ctx.forget(job.id)


def test_a_process_a_job_forks_that_returns_is_not_the_job(router, work):
    # The child raises and ends as Python would (status 1, its traceback in the job's
    # output); only the job itself records the result.
    ctx = router.local()
    job = ctx.detach(work.fork_and_fail_in_child)
    _wait_done(ctx, job.id)
    time.sleep(0.5)  # a child that wrongly wrote a result would have by now
    status = ctx.job(job.id)
    assert (status.state, status.result) == ("done", 1), status.error
    ctx.forget(job.id)


def test_a_record_without_its_meta_does_not_hide_the_other_jobs(work, tmp_path, monkeypatch):
    # As a detach on a full disk leaves it, or one forgotten while the list is read.
    monkeypatch.setenv("HOME", str(tmp_path))  # a jobs directory of this test's own
    with transport.Router() as router:
        ctx = router.local()
        job = ctx.detach(work.slow_double, 1, 0)
        _wait_done(ctx, job.id)
        os.mkdir(tmp_path / ".transport" / "jobs" / "1-00000000000a")
        assert [j.id for j in ctx.jobs()] == [job.id]


def test_a_late_import_in_a_detached_job_fails_without_asking_a_parent(router, sshd, work):
    ctx = _ssh(router, sshd)
    # A detached job has no parent to ask (its import hook knows it, so a late
    # import fails at once instead of waiting for an answer that cannot come)...
    status = _wait_done(ctx, ctx.detach(work.imports_may_ask_a_parent).id)
    assert status.state == "done", status.error
    assert status.result == [False]
    assert ctx.call(work.imports_may_ask_a_parent) == [True]
    ctx.forget(status.id)
    # ...and a module it was not given fails to import, naming the module.
    job = ctx.detach(work.import_late, "jobextra")  # not imported by jobpkg.work: not preloaded
    status = _wait_done(ctx, job.id, timeout=120.0)
    assert status.state == "failed"
    assert status.error.remote_type in ("ModuleNotFoundError", "ImportError")
    assert "jobextra" in status.error.remote_message
    ctx.forget(job.id)


def test_a_failing_job_records_its_traceback(router, sshd, work):
    ctx = _ssh(router, sshd)
    status = _wait_done(ctx, ctx.detach(work.fail).id)
    assert status.state == "failed"
    assert status.error.remote_type == "KeyError"
    assert "job failure" in status.error.remote_traceback
    ctx.forget(status.id)


def test_a_standard_library_function_can_be_detached(router, sshd):
    ctx = _ssh(router, sshd)
    listing = _wait_done(ctx, ctx.detach(os.listdir, "/").id)  # os.listdir is posix's
    assert listing.state == "done" and "etc" in listing.result
    ctx.forget(listing.id)
    slept = _wait_done(ctx, ctx.detach(time.sleep, 0).id)
    assert slept.state == "done" and slept.result is None
    ctx.forget(slept.id)


def test_jobs_lists_results_that_together_exceed_a_message(work, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with transport.Router(max_message_size=1024 * 1024) as router:
        ctx = router.local(python="/usr/bin/python3")
        started = [ctx.detach(work.sized, 700_000) for _ in range(2)]
        for job in started:
            assert _wait_done(ctx, job.id).state == "done"
        listed = ctx.jobs()
        assert [j.id for j in listed] == sorted(j.id for j in started)
        assert [len(j.result) for j in listed] == [700_000, 700_000]
        # A result no status could carry fails the job when it ends (it was recorded,
        # then every jobs() failed on it, and job() too).
        too_big = ctx.detach(work.sized, 1_100_000)
        status = _wait_done(ctx, too_big.id)
        assert status.state == "failed", status
        assert "over the message size limit" in status.error.remote_message, status.error
        assert {j.id: j.state for j in ctx.jobs()} == {
            **{j.id: "done" for j in started}, too_big.id: "failed"}


def test_jobs_directory_is_private(work, tmp_path, monkeypatch):
    # In a home of its own: the directory is made here, not found from an earlier run.
    monkeypatch.setenv("HOME", str(tmp_path))
    with transport.Router() as router:
        ctx = router.local()
        job = ctx.detach(work.slow_double, 1, 0)
        _wait_done(ctx, job.id)
        for path, mode in ((tmp_path / ".transport" / "jobs", 0o700),
                           (tmp_path / ".transport" / "jobs" / job.id, 0o700)):
            assert path.stat().st_mode & 0o777 == mode, path


@pytest.mark.parametrize("imported_first", [False, True])
def test_preload_whole_packages_makes_dynamic_imports_work_detached(router, sshd, work,
                                                                    imported_first):
    # imported_first: the package went with a call before; its modules still go with
    # whole_packages (none did: the package was sent, and its modules were not looked at).
    ctx = _ssh(router, sshd)
    if imported_first:
        assert ctx.call(work.import_late, "jobwhole") == "jobwhole"
    ctx.preload(["jobwhole"], whole_packages=True)
    job = ctx.detach(work.import_late, "jobwhole.plugin_b")
    status = _wait_done(ctx, job.id)
    assert status.state == "done", status.error
    assert status.result == "jobwhole.plugin_b"
    ctx.forget(job.id)
    # With no parent to ask for the package's listing, pkgutil lists the modules sent.
    job = ctx.detach(work.listed_modules, "jobwhole")
    status = _wait_done(ctx, job.id)
    assert (status.state, status.result) == ("done", ["plugin_a", "plugin_b"]), status.error
    ctx.forget(job.id)


@pytest.mark.parametrize("label", sorted(find_interpreters()))
def test_detached_jobs_on_every_interpreter(router, work, label):
    ctx = router.local(python=find_interpreters()[label])
    job = ctx.detach(work.slow_double, 21, 0)
    status = _wait_done(ctx, job.id)
    assert status.state == "done", status.error
    assert status.result == 42
    assert job.id in [listed.id for listed in ctx.jobs()]
    ctx.forget(job.id)
    assert job.id not in [listed.id for listed in ctx.jobs()]


def test_a_detached_job_reads_its_packages_data_files(router, work):
    import jobdata

    ctx = router.local()
    job = ctx.detach(jobdata.read, "templates/motd.txt")  # sent ahead: no parent to ask later
    status = _wait_done(ctx, job.id)
    assert status.state == "done", status.error
    assert status.result == "welcome\n"
    ctx.forget(job.id)


def test_the_data_files_sent_ahead_are_the_packages_own_within_a_budget(work):
    from transport.modules import ModuleFinder

    listing = {("jobdata", ""): ["__init__.py", "templates/"], ("jobdata", "templates"): ["motd.txt"]}
    assert ModuleFinder().data_files("jobdata") == {**listing,
                                                    ("jobdata", "templates/motd.txt"): b"welcome\n"}
    assert ModuleFinder().data_files("jobdata", budget=3) == listing


def test_preload_through_an_intermediary_caches_on_the_way(router, work):
    middle = router.local()
    inner = router.local(via=middle)
    inner.preload(["jobpkg.work"])
    asked_before = {k: list(v) for k, v in router._modules.requested.items()}
    assert inner.call(work.slow_double, 5, 0) == 10
    assert router._modules.requested == asked_before  # nothing asked: all preloaded
    other = router.local(via=middle)
    assert other.call(work.slow_double, 6, 0) == 12  # served by the intermediary's cache
    assert router._modules.requested == asked_before


def test_preload_of_an_unknown_module_is_an_import_error(router, work):
    ctx = router.local()
    with pytest.raises(ImportError, match="no_such_module_xyz"):
        ctx.preload(["no_such_module_xyz"])
    # Asked again, alone or beside a module that exists (it passed in silence).
    for names in (["no_such_module_xyz"], ["jobextra", "no_such_module_xyz"]):
        with pytest.raises(ImportError, match="cannot preload no_such_module_xyz "):
            ctx.preload(names)


def test_one_module_to_preload_may_be_given_as_a_string(router, work):
    # Its letters were preloaded: "cannot preload j, o, b, p, k, g, ...".
    ctx = router.local()
    ctx.preload("jobpkg.work")
    asked_before = {k: list(v) for k, v in router._modules.requested.items()}
    assert ctx.call(work.slow_double, 5, 0) == 10
    assert router._modules.requested == asked_before  # nothing asked: all preloaded


def test_jobs_of_a_python_2_user_whose_home_has_a_non_ascii_name(router, work, tmp_path,
                                                                 monkeypatch):
    from tests.support.interpreters import find_interpreters

    home = tmp_path / "ma\u00efson"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    ctx = router.local(python=find_interpreters()["2.7"])
    job = ctx.detach(work.slow_double, 21, 0)
    status = _wait_done(ctx, job.id)
    assert (status.state, status.result) == ("done", 42)
    assert [j.id for j in ctx.jobs()] == [job.id]
    ctx.forget(job.id)
    assert ctx.jobs() == []
