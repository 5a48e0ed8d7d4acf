"""A fabfile that exercises Fabric's Connection API; the tests run it on stock Fabric and
on the transport and compare what it prints."""

import io
import os
import stat

import fabric
from fabric import task
from invoke.exceptions import AuthFailure, Failure, UnexpectedExit
from invoke.watchers import FailingResponder, Responder

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
    show("env values as text, expanded there", c.run(
        "echo $PORT $UNSET; echo $PATH | cut -d: -f1",
        env={"PORT": 8080, "UNSET": None, "PATH": "/opt/tool/bin:$PATH"}, hide=True).stdout)
    show("the shell's name", c.run("echo $0; cd /nowhere", warn=True, hide=True).stdout)
    show("the shell's complaint", c.run("cd /nowhere", warn=True, hide=True).stderr)
    try:
        c.run("printf 'Password: '; read p; echo wrong; printf 'Password: '; read p; : LEFT", hide=True,
              watchers=[FailingResponder(pattern="Password: ", response="pw\n", sentinel="wrong")])
    except Failure as e:
        show("a watcher's failure", type(e).__name__)
    show("what it left running", c.run(
        "for i in 1 2 3 4 5 6 7 8 9 10; do ps -u $(id -u) -o args | grep -q '[:] LEFT' || break;"
        " sleep 0.2; done; ps -u $(id -u) -o args | grep -c '[:] LEFT'", hide=True, warn=True).stdout)
    before = c.run("echo $PPID", hide=True).stdout
    c.close()
    show("a new login after close()", c.run("echo $PPID", hide=True).stdout != before)
    other = type(c)(c.host, user=c.user, port=c.port, config=c.config)
    first = other.run("echo $PPID", hide=True).stdout
    c.close()
    show("a connection goes on when another to its host closes",
         other.run("echo $PPID", hide=True).stdout == first)
    other.close()
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
    show("a command its signal ended", c.run("kill -TERM $$", warn=True, hide=True).exited)
    inode = c.run("stat -c %i fabtest/fo.txt", hide=True).stdout
    c.put(io.StringIO("replaced\n"), "fabtest/fo.txt")
    show("put over a file keeps its inode (a container's bind mount stays its file)",
         c.run("stat -c %i fabtest/fo.txt", hide=True).stdout == inode)
    c.run("echo kept > fabtest/read-only.txt && chmod 444 fabtest/read-only.txt", hide=True)
    try:
        c.put(io.StringIO("replaced\n"), "fabtest/read-only.txt")
    except OSError as e:
        show("put over a read-only file", (type(e).__name__, e.errno))
    show("read-only file", c.run("cat fabtest/read-only.txt", hide=True).stdout)
    r = c.get("fabtest/fo.txt", os.path.join(HERE, "got-{host}.txt"))
    with open(r.local) as f:
        show("get", (os.path.basename(r.local), f.read()))
    buffer = io.BytesIO()
    c.get("fabtest/payload.txt", buffer)
    show("get into a file object", buffer.getvalue())
    try:
        c.get("fabtest/missing.txt", os.path.join(HERE, "missing.txt"))
    except OSError as e:
        show("get a missing file", (type(e).__name__, e.errno))
    with c.sftp() as sftp:  # the raw SFTP client (closed at the end: no transfer after it)
        sftp.mkdir("fabtest/dir")
        with sftp.open("fabtest/dir/a.txt", "w") as f:
            f.write("line 1\nline 2\n")
        with sftp.open("fabtest/dir/a.txt", "a") as f:
            f.write(b"line 3\n")
        with sftp.open("fabtest/dir/a.txt") as f:
            f.prefetch()
            show("sftp open and read", (f.readline(), f.read()))
            f.seek(0)
            show("sftp seek", f.read(4))
        with sftp.open("fabtest/dir/c.txt", "wb") as f:
            f.write(b"0123456789")
            f.flush()  # there now, before the file is closed
            show("sftp flush", c.run("cat fabtest/dir/c.txt", hide=True).stdout)
        with sftp.open("fabtest/dir/e.txt", "a") as f:
            f.write("appended\n")
            f.flush()
            f.write("twice\n")
            f.flush()
            show("sftp flush appends", c.run("cat fabtest/dir/e.txt", hide=True).stdout)
        progress = []
        local = os.path.join(HERE, "sent.txt")
        with open(local, "w") as f:
            f.write("sent with progress\n")
        attributes = sftp.put(local, "fabtest/dir/f.txt", callback=lambda *a: progress.append(a),
                              confirm=True)
        sftp.putfo(io.BytesIO(b"12345"), "fabtest/dir/g.txt", file_size=5,
                   callback=lambda *a: progress.append(a), confirm=False)
        sftp.get("fabtest/dir/f.txt", local, callback=lambda *a: progress.append(a))
        sftp.getfo("fabtest/dir/g.txt", io.BytesIO(), callback=lambda *a: progress.append(a))
        show("sftp put and get with callbacks", (attributes.st_size, progress[-1] == (5, 5),
                                                 (19, 19) in progress))
        show("sftp listdir_iter", sorted(a.filename for a in sftp.listdir_iter("fabtest/dir")))
        for name in ("e.txt", "f.txt", "g.txt"):
            sftp.remove("fabtest/dir/" + name)
        for operation in (lambda: sftp.rename("fabtest/dir/a.txt", "fabtest/dir/c.txt"),
                          lambda: sftp.open("fabtest/dir/c.txt", "x")):
            try:
                operation()
            except OSError:
                show("sftp refuses to replace a file", True)
        sftp.truncate("fabtest/dir/c.txt", 3)
        sftp.posix_rename("fabtest/dir/c.txt", "fabtest/dir/d.txt")
        show("sftp truncate and posix_rename", sftp.stat("fabtest/dir/d.txt").st_size)
        sftp.remove("fabtest/dir/d.txt")
        sftp.symlink("a.txt", "fabtest/dir/link")
        show("sftp listdir", sorted(sftp.listdir("fabtest/dir")))
        show("sftp listdir_attr", sorted((a.filename, a.st_size, stat.S_ISLNK(a.st_mode))
                                         for a in sftp.listdir_attr("fabtest/dir")))
        show("sftp readlink and lstat", (sftp.readlink("fabtest/dir/link"),
                                         stat.S_ISLNK(sftp.lstat("fabtest/dir/link").st_mode)))
        sftp.rename("fabtest/dir/a.txt", "fabtest/dir/b.txt")
        sftp.chdir("fabtest/dir")
        show("sftp chdir", (sftp.getcwd().endswith("/fabtest/dir"), sftp.stat("b.txt").st_size))
        sftp.remove("b.txt")
        sftp.unlink("link")
        sftp.chdir("..")
        sftp.rmdir("dir")
        try:
            sftp.stat("dir")
        except OSError as e:
            show("sftp stat of a removed directory", (type(e).__name__, e.errno))
    show("local", c.local("echo from the controller", hide=True).stdout)
    beside = fabric.Connection(c.host, user=c.user, port=c.port, config=c.config)
    show("a stock Connection on the same config", beside.run("echo stock", hide=True).stdout)
    beside.close()
    if hasattr(c, "call"):
        show("call", c.call(os.getuid) == int(c.run("id -u", hide=True).stdout))


@task
def disowned(c):
    c.run("sleep 3", disown=True)
    print("left running")


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


def _shouting_server():
    """A server here on 127.0.0.1 that answers each connection's first line in capitals
    and closes it (stock Fabric's tunnels close at the first end of file, both ways)."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def answer(conn):
        with conn:
            conn.sendall(conn.makefile("rb").readline().upper())

    def serve():
        while True:
            threading.Thread(target=answer, args=(server.accept()[0],), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ask(port, text):
    """Send a line to port on this machine, return the answer; stock Fabric's forward
    starts listening on a thread of its own, so the first attempts may be refused."""
    import socket
    import time

    for _ in range(100):
        try:
            s = socket.create_connection(("localhost", port))
        except ConnectionRefusedError:
            time.sleep(0.05)
            continue
        with s:
            s.sendall(text + b"\n")
            return s.makefile("rb").read()
    raise RuntimeError(f"nothing listens on port {port}")


ASK_THERE = ("import socket,sys; c=socket.create_connection(('127.0.0.1', int(sys.argv[1]))); "
             "c.sendall(b'from the host\\n'); print(c.makefile('rb').read().decode().strip())")


@task
def tunnels(c):
    server = _shouting_server()
    local = _free_port()
    with c.forward_local(local, remote_port=server, remote_host="127.0.0.1"):
        show("forward_local", [_ask(local, b"first"), _ask(local, b"second")])
    there = _free_port()
    with c.forward_remote(there, local_port=server, local_host="127.0.0.1"):
        show("forward_remote", c.run(f"python3 -c \"{ASK_THERE}\" {there}", hide=True).stdout)
    show("closed", c.run(f"python3 -c \"{ASK_THERE}\" {there}", hide=True, warn=True).failed)


@task
def limited_sudo(c):
    # A user sudoers allows one command only, password-less, and only on a terminal
    # (requiretty): sudo will not start an interpreter for it.
    show("allowed", c.sudo("id -un", pty=True, hide=True).stdout)
    no_tty = c.sudo("id -un", warn=True, hide=True)
    show("allowed, no terminal", (no_tty.exited, no_tty.stdout, no_tty.stderr.strip()))
    refused = c.sudo("cat /etc/shadow", pty=True, warn=True, hide=True)
    show("not allowed", (refused.exited, "is not allowed to execute" in refused.stdout))
    show("allowed again", c.sudo("id -u", pty=True, hide=True).stdout)


@task
def sudo_edges(c):
    # sudo's own answers, as stock gets them: an unknown user, and a wrong password after
    # a right one (sudo asks again each time: timestamp_timeout=0 for tp-sudo).
    unknown = c.sudo("id -un", user="nosuchuser", warn=True, hide=True)
    show("unknown user", (unknown.exited, "unknown user" in unknown.stderr))
    show("right password", c.sudo("id -un", hide=True).stdout)
    try:
        c.sudo("id -un", password="not-the-password", hide=True)
        show("wrong password", "accepted")
    except AuthFailure:
        show("wrong password", "refused")
    show("right password again", c.sudo("id -un", hide=True).stdout)


@task
def echoed_sudo(c):
    c.sudo("id -un", echo=True, hide="both")
    with c.prefix("true"):
        c.sudo("id -un", echo=True, hide="both", user="tp-app", env={"X": "1"})


@task
def dry_sudo(c):
    c.sudo("id -un")
    c.run("id -un")


@task
def lost(c):
    # The connection goes mid-command: the command's parent is what holds it (sshd's
    # session on stock, the interpreter on the transport).
    lost = c.run("kill -9 $PPID; sleep 30", warn=True, hide=True)
    show("lost", (lost.exited, lost.ok))
    show("again", c.run("echo again", hide=True).stdout)
    c.run("kill -9 $PPID; sleep 30")
