"""Room in the controller's limit on open files for the contexts it starts.

Each context the controller starts itself holds a few files open here (an ssh
client's pipes, a paramiko socket), for as long as it lives: under the common
soft limit of 1024 (`ulimit -n`) a fan-out ends near 300 hosts with "Too many
open files". Before each such start the soft limit is raised, when it is short,
towards what the contexts need, never above the hard limit (which only root may
raise): a process that never has many contexts keeps its limit as it was.
"""

from __future__ import annotations

# Open files per context in this process, with some to spare for everything else.
FILES_PER_CONTEXT = 4
FILES_SPARE = 64
# No soft limit is lower than this (macOS's default): below it, nothing is looked at.
LOWEST_SOFT_LIMIT = 256


def make_room(contexts: int) -> None:
    """Raise the soft limit on open files, if needed and allowed, so that `contexts`
    contexts fit beside what else this process has open."""
    needed = contexts * FILES_PER_CONTEXT + FILES_SPARE
    if needed <= LOWEST_SOFT_LIMIT:
        return
    try:
        import resource
    except ImportError:  # not a POSIX system: nothing to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if raised > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        except (ValueError, OSError):  # a system cap below the hard limit (macOS's OPEN_MAX)
            pass
