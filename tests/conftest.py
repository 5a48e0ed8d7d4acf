"""Shared fixtures: a Router per test, run from the repository root.

Local targets inherit the working directory, which is how they import
tests.remote_functions until module forwarding arrives.
"""

from __future__ import annotations

import os
import sys
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
