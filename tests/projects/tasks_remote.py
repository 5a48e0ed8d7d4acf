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
def follow(c, marker):
    # A command that notes the SIGINT Ctrl-C sends it (a hang-up would not run the trap).
    c.run(f"trap 'echo interrupted > /tmp/{marker}' INT; echo started; sleep 600; : {marker}")


ns = Collection(who, root, follow)
ns.configure({"runners": {"local": TransportRunner}, "transport": TARGET})
