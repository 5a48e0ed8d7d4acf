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


@task(help={"host": "also deploy to this [user@]host[:port] over ssh"})
def demo(c, host=""):
    """Deploy examples/app through the transport's invoke runner: to this machine, and to --host.

    Each target gets one interpreter; the release is uploaded, unpacked, made `current`,
    its dummy service restarted, checked, and stopped again.
    """
    import time

    from invoke import Config, Context

    from adapters.invoke import TransportRunner, shared_targets

    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from release import build_release

    release = time.strftime("%Y%m%d-%H%M%S")
    tarball = build_release(release)
    for spec in ["local"] + ([host] if host else []):
        remote = Context(Config(overrides={"runners": {"local": TransportRunner},
                                           "transport": {"host": spec}}))
        target = shared_targets().for_spec(spec)
        root = target.call(os.path.expanduser, "~/transport-demo")
        print(f"== {target.name}: deploying {release} to {root}")
        remote.run(f"mkdir -p {root}/releases/{release} {root}/shared")
        target.put(tarball, f"{root}/releases/{release}.tar.gz")
        with remote.cd(f"{root}/releases"):
            remote.run(f"tar -xzf {release}.tar.gz -C {release} && rm {release}.tar.gz")
        remote.run(f"ln -sfn releases/{release} {root}/current")
        remote.run(f"{root}/current/bin/service restart && {root}/current/bin/service status")
        remote.run(f"{root}/current/bin/service stop")
    shared_targets().close()
