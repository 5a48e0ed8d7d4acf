"""Shared fixtures: a Router per test, run from the repository root (where the
controller imports tests.remote_functions from; targets get it by module forwarding)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

import transport

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _run_from_repo_root():
    previous = os.getcwd()
    os.chdir(REPO_ROOT)
    yield
    os.chdir(previous)


@pytest.fixture
def router():
    with transport.Router() as r:
        yield r


@pytest.fixture
def ctx(router):
    return router.local(python=sys.executable)


# -- ssh and sudo: a private sshd on loopback and the test users --------------------------

SSH_ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


@pytest.fixture(scope="session")
def test_users():
    from tests.support import sshd

    try:
        sshd.ensure_users()
    except sshd.EnvironmentProblem as e:
        pytest.fail(str(e))
    return sshd


@pytest.fixture(scope="session")
def sshd(test_users):
    from tests.support.sshd import EnvironmentProblem, SshServer

    # Not under pytest's private tmp directory: sshd reads each user's authorized keys
    # as that user, so the directory must be searchable by everyone.
    workdir = Path(tempfile.mkdtemp(prefix="transport-sshd-"))
    server = SshServer(workdir, SSH_ADDRESSES)
    try:
        server.start()
    except EnvironmentProblem as e:
        pytest.fail(str(e))
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def python3_only_dir():
    """A directory holding only a `python3` (the system's), that the test users can
    search: a PATH of it alone hides every other program from an interpreter."""
    directory = tempfile.mkdtemp(prefix="tp-python-")  # not under /root, which they cannot enter
    os.chmod(directory, 0o755)
    os.symlink("/usr/bin/python3", os.path.join(directory, "python3"))
    yield directory
    shutil.rmtree(directory)
