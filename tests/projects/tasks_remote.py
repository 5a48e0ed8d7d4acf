"""An invoke tasks.py whose c.run goes through the transport; the test fills in the target."""

from invoke import Collection, task

from adapters.invoke import TransportRunner

TARGET = {}  # replaced by the test


@task
def who(c):
    c.run("id -un")
    with c.cd("/tmp"):
        c.run("pwd")
    r = c.run("exit 5", warn=True, hide=True)
    print(f"exited {r.exited}")


@task
def root(c):
    c.sudo("id -un")
    c.sudo("id -un", user="tp-app")
    with c.cd("/tmp"):
        c.sudo("pwd")
    c.sudo("echo $GREETING", env={"GREETING": "hello"})


@task
def limited(c):
    # sudoers allows this user `id` alone, on a terminal: sudo runs each command.
    print(c.sudo("id -un", pty=True, hide=True).stdout.strip())
    refused = c.sudo("cat /etc/shadow", pty=True, warn=True, hide=True)
    said = [words for words in ("is not allowed", "a password is required", "incorrect password")
            if words in refused.stdout]
    print(refused.exited, said)


@task
def follow(c, marker):
    # A command that notes the SIGINT Ctrl-C sends it (a hang-up would not run the trap).
    c.run(f"trap 'echo interrupted > /tmp/{marker}' INT; echo started; sleep 600; : {marker}")


@task
def follow_on_a_pty(c, marker):
    # The job runs in a process group of its own, in the terminal's foreground (set -m):
    # only Ctrl-C typed at the terminal reaches it; the shell then goes on.
    r = c.run(f"set -m; (trap 'echo interrupted > /tmp/{marker}; exit 3' INT; "
              f"echo started > /tmp/{marker}.started; sleep 600; : {marker}); echo after $?",
              pty=True, hide=True)
    print(f"exited {r.exited}: {r.stdout.splitlines()[-1]}")


ns = Collection(who, root, limited, follow, follow_on_a_pty)
ns.configure({"runners": {"local": TransportRunner}, "transport": TARGET})
