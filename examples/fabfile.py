"""An example deploy, as a Fabric user writes it: nothing here knows about the transport.

    fab -H web1,web2 deploy      # upload, unpack, switch `current`, restart, check health
    fab -H web1 status
    fab -H web1 stop

The fabric.yaml beside this file selects the transport; delete it and the same
tasks run on stock Fabric.
"""

import os
import time

import deploy_checks
from fabric import task
from invoke.exceptions import Exit
from release import build_release

KEEP_RELEASES = 3


def check_health(c, root):
    """The service's state: by a Python call on the host where the Connection offers one."""
    if hasattr(c, "call"):  # the transport's Connection: modules are forwarded on demand
        return c.call(deploy_checks.service_health, root)
    out = c.run(f"{root}/current/bin/service status", hide=True, warn=True).stdout.split()
    return {"running": out[:1] == ["running"], "version": out[1] if len(out) > 1 else None}


@task
def deploy(c, root="deploy-demo"):
    """Upload a release, unpack it, switch `current` to it, restart the service, check health."""
    release = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    tarball = build_release(release)
    c.run(f"mkdir -p {root}/releases {root}/shared")
    c.put(tarball, f"{root}/releases/")
    with c.cd(f"{root}/releases"):
        c.run(f"mkdir {release} && tar -xzf {release}.tar.gz -C {release} && rm {release}.tar.gz")
        c.run(f"test -x {release}/bin/service")
    c.run(f"ln -sfn releases/{release} {root}/current.new && mv -T {root}/current.new {root}/current")
    c.run(f"{root}/current/bin/service restart")
    health = check_health(c, root)
    if not health["running"] or health["version"] != release:
        raise Exit(f"{c.host}: unhealthy after deploy: {health}")
    print(f"{c.host}: {release} is live")
    with c.cd(f"{root}/releases"):  # keep the newest few releases (ids sort by time)
        c.run(f"ls -1 | sort -r | tail -n +{KEEP_RELEASES + 1} | xargs -r rm -rf")


@task
def status(c, root="deploy-demo"):
    """Show what the service runs."""
    c.run(f"{root}/current/bin/service status")


@task
def stop(c, root="deploy-demo"):
    """Stop the service."""
    c.run(f"test ! -x {root}/current/bin/service || {root}/current/bin/service stop")
