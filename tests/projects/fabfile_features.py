"""A fabfile that exercises Fabric's Connection API; the tests run it on stock Fabric and
on the transport and compare what it prints."""

import io
import os

import fabric
from fabric import task
from invoke.exceptions import UnexpectedExit
from invoke.watchers import Responder

HERE = os.path.dirname(os.path.abspath(__file__))


def show(label, value):
    print(f"{label}: {value!r}")


@task
def features(c):
    show("connection class", type(c).__module__)
    r = c.run("echo out; echo err >&2", hide=True)
    show("result", (r.stdout, r.stderr, r.exited, r.ok, r.failed, r.command, r.connection is c))
    r = c.run("echo soft; exit 3", warn=True, hide=True)
    show("warn", (r.stdout, r.exited, r.ok, r.failed))
    with c.cd("/tmp"), c.prefix("export PREFIXED=yes"):
        show("cd and prefix", c.run("pwd; echo $PREFIXED", hide=True).stdout)
    show("env", c.run("echo $GREETING", env={"GREETING": "hi"}, hide=True).stdout)
    show("pty", c.run("test -t 0 && test -t 1 && echo on a tty", pty=True, hide=True).stdout)
    show("pty size and terminal type", c.run("stty size; echo $TERM", pty=True, hide=True).stdout)
    show("hide stdout only", c.run("echo shown; echo hidden-err >&2", hide="stderr").stdout)
    c.run("echo echoed", echo=True)
    answered = c.run("printf 'Continue? [y/n] '; read a; echo \"answer: $a\"", hide=True,
                     watchers=[Responder(pattern=r"Continue\? \[y/n\] ", response="y\n")])
    show("a watcher answers a prompt", answered.stdout)
    show("in_stream", c.run("cat; echo end", in_stream=io.StringIO("fed é\n"), hide=True).stdout)
    show("sudo with a watcher too",
         c.sudo("sh -c 'printf \"Name? \"; read n; echo \"$(id -un) $n\"'", hide=True,
                watchers=[Responder(pattern=r"Name\? ", response="bob\n")]).stdout)
    show("sudo", c.sudo("sh -c 'id -un; echo $HOME'", hide=True).stdout)
    show("sudo as user", c.sudo("id -un", user="tp-app", hide=True).stdout)
    show("sudo as a nologin user", c.sudo("id -un", user="nobody", hide=True).stdout)
    with open(os.path.join(HERE, "payload.txt"), "w") as f:
        f.write("payload\n")
    c.run("rm -rf fabtest && mkdir fabtest", hide=True)
    r = c.put(os.path.join(HERE, "payload.txt"), "fabtest/")
    show("put", (r.remote, os.path.basename(r.local)))
    c.put(io.StringIO("from a file object\n"), "fabtest/fo.txt")
    show("remote files", c.run("cat fabtest/payload.txt fabtest/fo.txt", hide=True).stdout)
    c.run("echo old > fabtest/secret.env && chmod 600 fabtest/secret.env"
          " && ln -s secret.env fabtest/link.env", hide=True)
    c.put(io.StringIO("token=1\n"), "fabtest/link.env")
    show("put over a private file, through a symlink",
         c.run("stat -c '%a %F' fabtest/secret.env fabtest/link.env; cat fabtest/secret.env",
               hide=True).stdout)
    r = c.get("fabtest/fo.txt", os.path.join(HERE, "got-{host}.txt"))
    with open(r.local) as f:
        show("get", (os.path.basename(r.local), f.read()))
    buffer = io.BytesIO()
    c.get("fabtest/payload.txt", buffer)
    show("get into a file object", buffer.getvalue())
    try:
        c.get("fabtest/missing.txt", os.path.join(HERE, "missing.txt"))
    except OSError as e:
        show("get a missing file", type(e).__name__)
    show("local", c.local("echo from the controller", hide=True).stdout)
    beside = fabric.Connection(c.host, user=c.user, port=c.port, config=c.config)
    show("a stock Connection on the same config", beside.run("echo stock", hide=True).stdout)
    beside.close()
    if hasattr(c, "call"):
        show("call", c.call(os.getuid) == int(c.run("id -u", hide=True).stdout))


@task
def fail(c):
    c.run("echo about to fail; echo bad thing >&2; exit 7")


@task
def whoami(c):
    show("connection class", type(c).__module__)
    c.run("id -un")


@task
def piped(c):
    c.run("cat; echo end")


@task
def shell(c):
    try:
        c.shell(in_stream=io.StringIO("echo $((6 * 7))\nexit 3\n"), hide=True)
    except TypeError as e:
        show("shell takes Fabric's kwargs only", str(e))
    try:
        c.shell(in_stream=io.StringIO("echo $((6 * 7))\nexit 3\n"),
                watchers=[Responder(pattern="never printed", response="unused\n")])
    except UnexpectedExit as e:  # the session's exit status, as for run()
        session = e.result
    show("shell", (session.exited, session.command, session.stderr, "42\r\n" in session.stdout))
