"""The project's own chores, for invoke: `inv test`, `inv lint`, `inv bench`, `inv demo`."""

from __future__ import annotations

import os
import sys

from invoke import task

ROOT = os.path.dirname(os.path.abspath(__file__))
PYTHON = sys.executable


@task
def setup_system(c):
    """Install the system packages the tests need (apt, when root)."""
    c.run(f"bash {ROOT}/.ci/setup-system", pty=False)


@task(pre=[setup_system], help={"args": "extra pytest arguments"})
def test(c, args=""):
    """Run the whole test suite (installs what it needs first)."""
    with c.cd(ROOT):
        c.run(f"{PYTHON} -m pytest {args}", pty=False)


@task
def lint(c):
    """ruff over the whole tree."""
    with c.cd(ROOT):
        c.run(f"{PYTHON} -m ruff check .", pty=False)


@task(help={"quick": "a short smoke run", "output": "directory for the results"})
def bench(c, quick=False, output=""):
    """Run the benchmarks side by side with the peers (see bench/run.py)."""
    with c.cd(ROOT):
        c.run(f"{PYTHON} -m bench.run" + (" --quick" if quick else "")
              + (f" --output {output}" if output else ""), pty=False)


@task
def demo(c):
    """Run a few functions and commands on this machine through the transport."""
    with c.cd(ROOT):
        c.run(f"{PYTHON} -m transport ping", pty=False)
        c.run(f"{PYTHON} -m transport call platform:node", pty=False)
        c.run(f"{PYTHON} -m transport call os:getloadavg", pty=False)
