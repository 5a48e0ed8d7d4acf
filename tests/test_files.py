"""put and get: streamed, atomic, mode-preserving, through chains, and safe when cut off."""

from __future__ import annotations

import glob
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

import transport

PY = "/usr/bin/python3"


def _ssh(router, sshd, user="tp-plain"):
    return router.ssh("127.0.0.1", port=sshd.port, user=user, python=PY,
                      ssh_options=sshd.ssh_options())


def _random_file(path, size):
    path.write_bytes(os.urandom(size))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _receiving_into(pid, directory):
    """Whether process pid has a file open in directory: a transfer's temporary file,
    which has no name there where the system allows it (Linux's O_TMPFILE)."""
    fds = f"/proc/{pid}/fd"
    for fd in os.listdir(fds):
        try:
            if os.readlink(f"{fds}/{fd}").startswith(f"{directory}/"):
                return True
        except OSError:  # closed meanwhile
            pass
    return False


def test_put_and_get_round_trip_over_ssh(router, sshd, tmp_path):
    ctx = _ssh(router, sshd)
    source = tmp_path / "payload.bin"
    digest = _random_file(source, 5 * 1024 * 1024 + 123)
    source.chmod(0o640)
    assert ctx.put(str(source), "/home/tp-plain/payload.bin") == source.stat().st_size
    assert ctx.call(os.stat, "/home/tp-plain/payload.bin")[0] & 0o777 == 0o640
    back = tmp_path / "back.bin"
    assert ctx.get("/home/tp-plain/payload.bin", str(back)) == source.stat().st_size
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    assert back.stat().st_mode & 0o777 == 0o640
    ctx.run("rm -f /home/tp-plain/payload.bin", check=True)


def test_a_remote_path_may_start_with_a_home(router, sshd, tmp_path):
    # As scp takes `host:~/x`: it was looked up as a directory named "~".
    ctx = _ssh(router, sshd)
    source = tmp_path / "note.txt"
    source.write_text("home\n")
    try:
        for remote in ("~/tp-home-note.txt", "~tp-plain/tp-home-note.txt", "tp-home-note.txt"):
            ctx.put(source, remote)
            assert ctx.call(os.path.getsize, "/home/tp-plain/tp-home-note.txt") == 5
            ctx.get(remote, tmp_path / "back.txt")
            assert (tmp_path / "back.txt").read_text() == "home\n"
            ctx.call(os.remove, "/home/tp-plain/tp-home-note.txt")
    finally:
        ctx.run("rm -f /home/tp-plain/tp-home-note.txt")
    with pytest.raises(transport.RemoteError, match="No such file"):
        ctx.get("~no-such-user-here/x", tmp_path / "none")


def test_a_get_to_a_path_refused_here_leaves_nothing_registered(router, tmp_path):
    # Each one left a handler behind in the router (a get into a missing directory, by a
    # long-running controller, a thousand times over).
    ctx = router.local(python=PY)
    handlers = len(router._core._handlers)
    for _ in range(5):
        with pytest.raises(FileNotFoundError):
            ctx.get("/etc/hostname", tmp_path / "no-such-directory" / "x")
    assert len(router._core._handlers) == handlers


def test_round_trip_with_a_python_2_target(router, tmp_path):
    from tests.support.interpreters import find_interpreters

    ctx = router.local(python=find_interpreters()["2.7"])
    data = os.urandom(300_000)
    (tmp_path / "src").write_bytes(data)
    ctx.put(str(tmp_path / "src"), str(tmp_path / "mid"))
    ctx.get(str(tmp_path / "mid"), str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == data


def test_mode_can_be_given_and_empty_files_work(router, tmp_path):
    ctx = router.local(python=PY)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert ctx.put(str(empty), str(tmp_path / "empty.copy"), mode=0o600) == 0
    assert (tmp_path / "empty.copy").stat().st_mode & 0o777 == 0o600
    assert ctx.get(str(tmp_path / "empty.copy"), str(tmp_path / "empty.back"), mode=0o644) == 0
    assert (tmp_path / "empty.back").stat().st_mode & 0o777 == 0o644


def test_paths_may_be_pathlib_paths_and_bad_arguments_are_refused_here(router, tmp_path):
    # A Path could not be sent ("cannot encode a value of type pathlib.PosixPath"); a
    # mode of "644" or an empty path failed on the target, or named a temporary file.
    ctx = router.local(python=PY)
    source = tmp_path / "source"
    source.write_bytes(b"data")
    assert ctx.put(source, tmp_path / "copy") == 4
    assert ctx.get(tmp_path / "copy", tmp_path / "back") == 4
    assert (tmp_path / "back").read_bytes() == b"data"
    assert transport.Group(router, []).get(tmp_path / "copy", tmp_path / "{host}") == {}
    for call, error, words in (
            (lambda: ctx.put(source, tmp_path / "x", mode="644"), TypeError,
             "mode is an int of permission bits (0o644), not str"),
            (lambda: ctx.get(source, tmp_path / "x", mode=0o17777), ValueError,
             "mode is permission bits from 0 to 0o7777, not 0o17777"),
            (lambda: ctx.put(source, ""), ValueError, "remote_path is empty: name a file"),
            (lambda: ctx.get(source, ""), ValueError, "local_path is empty: name a file"),
            (lambda: ctx.put(3, "/tmp/x"), TypeError,
             "local_path is a path (str or pathlib.Path), not int")):
        with pytest.raises(error) as info:
            call()
        assert str(info.value) == words
    assert not (tmp_path / "x").exists()


def test_an_existing_file_keeps_owner_and_mode_and_symlinks_are_written_through(
        router, sshd, tmp_path):
    import pwd

    plain = pwd.getpwnam("tp-plain")
    ctx = router.local(python=PY)  # as root, like a sudo context
    source = tmp_path / "source"
    source.write_bytes(b"new content")
    source.chmod(0o755)
    secret = tmp_path / "secret.env"
    secret.write_bytes(b"old")
    secret.chmod(0o600)
    os.chown(secret, plain.pw_uid, plain.pw_gid)
    link = tmp_path / "link.env"
    link.symlink_to(secret.name)
    ctx.put(str(source), str(link), preserve_mode=False)
    assert link.is_symlink() and secret.read_bytes() == b"new content"
    st = secret.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, plain.pw_uid, plain.pw_gid)
    # A new file gets the mode new files get there; by default, the source's.
    umask = os.umask(0o022)
    os.umask(umask)
    ctx.put(str(source), str(tmp_path / "fresh"), preserve_mode=False)
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o666 & ~umask
    ctx.put(str(source), str(secret))
    assert secret.stat().st_mode & 0o777 == 0o755
    # get() the same way round.
    local = tmp_path / "local.conf"
    local.write_bytes(b"old")
    local.chmod(0o640)
    ctx.get(str(source), str(local), preserve_mode=False)
    assert local.read_bytes() == b"new content" and local.stat().st_mode & 0o777 == 0o640


def test_put_through_a_chain(router, sshd, tmp_path):
    web = _ssh(router, sshd, "tp-nopw")
    root = router.sudo(via=web, python=PY)
    source = tmp_path / "through.bin"
    digest = _random_file(source, 1024 * 1024)
    root.put(str(source), "/root/tp-through.bin")
    assert root.run("sha256sum /root/tp-through.bin").stdout.split()[0].decode() == digest
    assert root.run("stat -c %U /root/tp-through.bin").stdout == b"root\n"
    root.run("rm -f /root/tp-through.bin", check=True)


def test_errors_name_the_host_and_leave_no_file(router, tmp_path):
    ctx = router.local(python=PY)
    with pytest.raises(transport.RemoteError) as info:
        ctx.get("/nonexistent/file", str(tmp_path / "x"))
    assert "No such file" in str(info.value) and info.value.host == ctx.name
    assert not (tmp_path / "x").exists()
    source = tmp_path / "src"
    source.write_bytes(b"data")
    with pytest.raises(transport.RemoteError) as info:
        ctx.put(str(source), "/nonexistent-dir/file")
    # The error names the destination, as scp's does, not a temporary file beside it.
    assert "'/nonexistent-dir/file'" in str(info.value) and info.value.host == ctx.name
    assert ".tp-" not in str(info.value)
    assert os.listdir(tmp_path) == ["src"]


GET_ONTO_A_FULL_DISK = """
import resource, signal, sys, transport
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
router = transport.Router()
ctx = router.local(python="/usr/bin/python3")
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    ctx.get(sys.argv[1], sys.argv[2])
except OSError as e:
    print("local write failed:", e.strerror)
print(ctx.call_async(pow, 2, 2).result(timeout=60))  # the target is free at once, not in 120 s
router.close()
"""


def _transfer_in_a_script(script, tmp_path, size, *args):
    """Run script (a controller of its own) on a random file of size; its output, and
    whether it left no copy behind."""
    import subprocess
    import sys

    source = tmp_path / "big.bin"
    _random_file(source, size)
    result = subprocess.run([sys.executable, "-c", script, str(source),
                             str(tmp_path / "copy.bin"), *args], capture_output=True,
                            text=True, timeout=200)
    return result, not list(tmp_path.glob("*copy.bin*"))


def test_a_get_the_controller_gives_up_on_stops_the_target(tmp_path):
    result, no_copy = _transfer_in_a_script(GET_ONTO_A_FULL_DISK, tmp_path, 32 * 1024 * 1024)
    assert result.stdout == ("local write failed: File too large (on this machine, in a get "
                             "from local:/usr/bin/python3)\n4\n"), result.stderr
    assert "dropped" not in result.stderr  # the chunks that were on the way go quietly
    assert no_copy  # and no partial file


PUT_INTERRUPTED = """
import glob, os, signal, sys, transport
import transport.files
router = transport.Router()
ctx = router.local(python="/usr/bin/python3")
if sys.argv[3] == "sending":  # Ctrl-C once a window of chunks is on the way
    def interrupted(*args):
        raise KeyboardInterrupt
    transport.files._acknowledged = interrupted
else:  # Ctrl-C while the target has not answered start_receive yet
    def interrupt(signum, frame):
        os.kill(ctx.pid, signal.SIGCONT)
        raise KeyboardInterrupt
    ctx.call(pow, 2, 2)
    os.kill(ctx.pid, signal.SIGSTOP)
    signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    ctx.put(sys.argv[1], sys.argv[2])
except KeyboardInterrupt:
    print("interrupted")
print(ctx.call_async(pow, 2, 2).result(timeout=60))
ctx.call(pow, 2, 2)  # after the abort the first answer let go (the target runs calls in order)
begun = glob.glob(os.path.join(os.path.dirname(sys.argv[2]), ".copy.bin*"))
print("discarded while it runs" if not begun else begun)
router.close()
"""


@pytest.mark.parametrize("when", ["sending", "starting"])
def test_a_put_interrupted_by_ctrl_c_ends_quietly(tmp_path, when):
    result, no_copy = _transfer_in_a_script(PUT_INTERRUPTED, tmp_path, 64 * 1024 * 1024, when)
    assert result.stdout == "interrupted\n4\ndiscarded while it runs\n", result.stderr
    assert "dropped" not in result.stderr  # the acknowledgements on the way go quietly
    assert no_copy  # what the target began is discarded


@pytest.fixture
def plain_home_dir():
    """A new directory of tp-plain's in its home, removed afterwards: what a test leaves
    there (a killed run's files) must not meet the next run."""
    import pwd
    import shutil
    import tempfile

    plain = pwd.getpwnam("tp-plain")
    directory = tempfile.mkdtemp(prefix="test-files-", dir=plain.pw_dir)
    os.chown(directory, plain.pw_uid, plain.pw_gid)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_an_interrupted_put_leaves_no_partial_file(sshd, tmp_path, plain_home_dir):
    source = tmp_path / "big.bin"
    _random_file(source, 64 * 1024 * 1024)
    destination = os.path.join(plain_home_dir, "interrupted.bin")
    with transport.Router() as router:
        ctx = _ssh(router, sshd)
        connection = router._connections[ctx.context_id]

        def interrupt():
            # Once the transfer has begun, stop the target (the sender stalls at its
            # window), cut the connection, and let the target see the end of it.
            deadline = time.monotonic() + 60
            while not _receiving_into(ctx.pid, plain_home_dir) and time.monotonic() < deadline:
                time.sleep(0.002)
            os.kill(ctx.pid, signal.SIGSTOP)
            os.kill(connection.process.pid, signal.SIGKILL)
            os.kill(ctx.pid, signal.SIGCONT)

        killer = threading.Thread(target=interrupt)
        killer.start()
        with pytest.raises(transport.TransportError):
            ctx.put(str(source), destination)
        killer.join()
    deadline = time.monotonic() + 30
    while os.listdir(plain_home_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(plain_home_dir) == [], "partial or temporary file left behind"


@pytest.mark.parametrize("side", ["target", "controller"])
def test_a_transfer_whose_receiver_is_killed_leaves_nothing(tmp_path, side):
    # kill -9 (or the OOM killer) gives no chance to clean up: the file being received
    # has no name until it is complete.
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        f.truncate(4 << 30)  # sparse: read fast, sent for a while
    destination = tmp_path / "dest"
    destination.mkdir()
    result = subprocess.run([sys.executable, "-c", KILLED_RECEIVER, side, str(source),
                             str(destination)], capture_output=True, text=True, timeout=200)
    assert result.stdout == "killed while receiving\n", result.stderr
    assert os.listdir(destination) == [], "temporary file left behind"


KILLED_RECEIVER = """
import os, signal, sys, threading, time, transport
sys.path.insert(0, os.getcwd())
from tests.test_files import _receiving_into
side, source, destination = sys.argv[1:]
router = transport.Router()
ctx = router.local(python="/usr/bin/python3")
receiver = ctx.pid if side == "target" else os.getpid()

def kill():
    deadline = time.monotonic() + 60
    while not _receiving_into(receiver, destination) and time.monotonic() < deadline:
        time.sleep(0.002)
    print("killed while receiving", flush=True)
    os.kill(receiver, signal.SIGKILL)

threading.Thread(target=kill, daemon=True).start()
try:
    if side == "target":
        ctx.put(source, os.path.join(destination, "big.bin"))
    else:
        ctx.get(source, os.path.join(destination, "big.bin"))
except transport.TransportError:
    pass
router.close()
"""


def test_a_write_in_place_that_fails_names_the_file_holding_the_new_content(router, tmp_path):
    # /dev/full is written in place (a device), and every write to it fails.
    ctx = router.local(python=PY)
    source = tmp_path / "source"
    source.write_bytes(b"new content")
    with pytest.raises(transport.RemoteError) as info:
        ctx.put(str(source), "/dev/full")
    named = re.search(r"\(written in part; the whole new content is in (\S+)\)", str(info.value))
    assert named, info.value
    try:
        assert "/dev/full: No space left on device" in str(info.value)
        with open(named.group(1), "rb") as f:
            assert f.read() == b"new content"
    finally:
        os.unlink(named.group(1))


def test_transfers_that_succeed_or_fail_leave_no_descriptor_open(router, tmp_path):
    # Each file being received is held by a descriptor of its own until it is settled.
    ctx = router.local(python=PY)
    source = tmp_path / "source"
    source.write_bytes(b"data")

    def open_files():
        return len(os.listdir(f"/proc/{ctx.pid}/fd")), len(os.listdir("/proc/self/fd"))

    def transfers():
        ctx.put(str(source), str(tmp_path / "put"))
        ctx.get(str(source), str(tmp_path / "got"))
        with pytest.raises(transport.RemoteError):  # a size that changes as it is read
            ctx.put("/proc/version", str(tmp_path / "refused"))
        with pytest.raises(transport.RemoteError) as info:  # a device whose writes fail
            ctx.put(str(source), "/dev/full")
        os.unlink(re.search(r"the whole new content is in (\S+)\)", str(info.value)).group(1))

    transfers()  # (what the first transfer imports stays)
    before = open_files()
    for _ in range(5):
        transfers()
    assert open_files() == before


def test_a_file_whose_size_is_not_what_it_announced_is_refused(router, tmp_path):
    # /proc/version is a regular file whose stat says 0 bytes, and which reads as more:
    # what a file that grows while it is sent looks like.
    ctx = router.local(python=PY)
    with open("/proc/version", "rb") as f:
        length = len(f.read())
    assert os.stat("/proc/version").st_size == 0 < length
    with pytest.raises(transport.RemoteError) as info:
        ctx.put("/proc/version", str(tmp_path / "dest"))
    assert f"received {length} bytes of 0: the file changed size while it was sent" in str(info.value)
    assert info.value.host == ctx.name
    assert not (tmp_path / "dest").exists()


def test_a_symlink_another_user_planted_in_a_shared_directory_is_not_followed(router, tmp_path):
    import pwd

    plain = pwd.getpwnam("tp-plain")
    ctx = router.local(python=PY)  # as root, like a sudo context
    shared = tmp_path / "shared"  # as /tmp is: sticky, and anyone may write
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    trap = shared / "report.txt"
    trap.symlink_to(victim)
    os.lchown(trap, plain.pw_uid, plain.pw_gid)
    source = tmp_path / "source"
    source.write_bytes(b"overwritten")
    with pytest.raises(transport.RemoteError, match="symlink in a shared directory"):
        ctx.put(str(source), str(trap))
    with pytest.raises(PermissionError):  # the controller's side of a get, the same
        ctx.get(str(source), str(trap))
    assert victim.read_bytes() == b"precious" and os.listdir(shared) == ["report.txt"]
    os.lchown(trap, 0, 0)  # a link of this user's own is written through, as before
    ctx.put(str(source), str(trap))
    assert victim.read_bytes() == b"overwritten"


def test_a_directory_as_the_destination_is_refused_before_any_data_moves(router, tmp_path):
    ctx = router.local(python=PY)
    source = tmp_path / "source"
    source.write_bytes(b"x" * 1000)
    directory = tmp_path / "dir"
    directory.mkdir()
    for destination in (str(directory), f"{directory}/", f"{tmp_path}/missing/"):
        with pytest.raises(transport.RemoteError, match="the destination must name a file"):
            ctx.put(str(source), destination)
        with pytest.raises(IsADirectoryError, match="the destination must name a file"):
            ctx.get(str(source), destination)
    assert sorted(os.listdir(tmp_path)) == ["dir", "source"] and os.listdir(directory) == []


def test_a_file_name_near_the_length_limit_is_transferred(router, tmp_path):
    ctx = router.local(python=PY)
    source = tmp_path / "source"
    source.write_bytes(b"data")
    there, back = tmp_path / ("t" * 250), tmp_path / ("b" * 250)
    assert ctx.put(str(source), str(there)) == 4 and there.read_bytes() == b"data"
    assert ctx.get(str(there), str(back)) == 4 and back.read_bytes() == b"data"


def test_a_shutdown_during_a_put_leaves_no_temporary_file(tmp_path):
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        f.truncate(4 << 30)  # sparse: read fast, sent for a while
    destination = tmp_path / "dest"
    destination.mkdir()
    router = transport.Router()
    ctx = router.local(python=PY)
    failures = []

    def put():
        try:
            ctx.put(str(source), str(destination / "big.bin"))
        except transport.TransportError as e:
            failures.append(e)

    sender = threading.Thread(target=put)
    sender.start()
    deadline = time.monotonic() + 60
    while not _receiving_into(ctx.pid, destination) and time.monotonic() < deadline:
        time.sleep(0.002)
    router.close()
    sender.join(60)
    assert failures, "the put was not cut short: make the file bigger"
    assert os.listdir(destination) == [], "temporary file left behind"


def test_a_get_reads_the_file_to_its_end_as_sftp_does(router, tmp_path):
    # /proc/version: stat says 0 bytes, and it reads as more; /dev/null: a device.
    ctx = router.local(python=PY)
    with open("/proc/version", "rb") as f:
        version = f.read()
    assert ctx.get("/proc/version", str(tmp_path / "version")) == len(version)
    assert (tmp_path / "version").read_bytes() == version
    assert ctx.get("/dev/null", str(tmp_path / "null")) == 0
    assert (tmp_path / "null").read_bytes() == b""
    os.mkfifo(tmp_path / "fifo")  # opening it would wait for a writer
    with pytest.raises(transport.RemoteError, match="pipe or socket"):
        ctx.get(str(tmp_path / "fifo"), str(tmp_path / "from-fifo"))
    assert sorted(os.listdir(tmp_path)) == ["fifo", "null", "version"]


def test_a_put_whose_writes_fail_there_stops_sending(router, tmp_path):
    from tests import remote_functions as rf

    ctx = router.local(python=PY)
    assert ctx.call(rf.limit_file_size, 1 << 20)  # as a disk that fills after 1 MiB
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        f.truncate(256 << 20)  # sparse
    stream = router._core.route_for(ctx.context_id)
    before = stream.bytes_sent
    with pytest.raises(transport.RemoteError, match="copy.bin: File too large"):
        ctx.put(str(source), str(tmp_path / "copy.bin"))
    assert stream.bytes_sent - before < 32 << 20  # a window or so, not the whole file
    assert os.listdir(tmp_path) == ["big.bin"] and ctx.call(pow, 2, 2) == 4


LOCAL_DISK_FILLS = """
import resource, signal, sys
sys.path[1:1] = [{root!r}]
import transport
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # as a disk that fills
with transport.Router() as router:
    ctx = router.local(python=sys.executable, name="web1")
    try:
        ctx.get(sys.argv[1], sys.argv[2])
    except OSError as e:
        print(type(e).__name__, e.errno, e)
"""


def test_a_get_whose_writes_fail_here_says_it_is_this_machine(tmp_path):
    # "[Errno 28] No space left on device" read as the host's disk being full.
    import errno

    from tests.conftest import REPO_ROOT
    from tests.support.processes import run_python_program

    script = tmp_path / "get.py"
    script.write_text(LOCAL_DISK_FILLS.format(root=str(REPO_ROOT)))
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(4 << 20))
    out = run_python_program([sys.executable, str(script), str(source), str(tmp_path / "copy.bin")], 120)
    assert out.stdout == (f"OSError {errno.EFBIG} [Errno {errno.EFBIG}] File too large (on this "
                          f"machine, in a get from web1): '{tmp_path / 'copy.bin'}'\n"), out.stderr
    assert sorted(os.listdir(tmp_path)) == ["big.bin", "get.py"]


def test_a_file_that_is_more_than_its_name_is_written_in_place(router, tmp_path):
    import stat
    import subprocess

    ctx = router.local(python=PY)  # as root, like a sudo context
    source = tmp_path / "source"
    source.write_bytes(b"new content")
    source.chmod(0o640)
    # Another hard link sees the new content: the inode stays.
    linked, other_name = tmp_path / "linked", tmp_path / "other-name"
    linked.write_bytes(b"old")
    os.link(linked, other_name)
    inode = linked.stat().st_ino
    ctx.put(str(source), str(linked))
    assert other_name.read_bytes() == b"new content" and linked.stat().st_ino == inode
    assert linked.stat().st_mode & 0o777 == 0o640  # the mode as asked, in place too
    # in_place (SFTP's way, which Fabric's put takes): a plain file keeps its inode too.
    plain = tmp_path / "plain"
    plain.write_bytes(b"old")
    inode = plain.stat().st_ino
    ctx.put(str(source), str(plain), in_place=True)
    assert plain.read_bytes() == b"new content" and plain.stat().st_ino == inode
    plain.unlink()
    # A bind-mounted file (as a container's /etc/hosts) cannot be renamed over.
    backing, mounted = tmp_path / "backing", tmp_path / "mounted"
    backing.write_bytes(b"old")
    mounted.write_bytes(b"")
    mount = subprocess.run(["mount", "--bind", str(backing), str(mounted)],
                           capture_output=True, text=True)
    assert mount.returncode == 0, f"this test bind-mounts a file, as root: {mount.stderr}"
    try:
        ctx.put(str(source), str(mounted))
        ctx.get(str(source), str(mounted))  # the controller's side the same
        assert backing.read_bytes() == b"new content"
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    # A device is written to, never replaced by a file, and keeps its mode.
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR, os.makedev(1, 3))
    null.chmod(0o666)
    ctx.put(str(source), str(null))
    assert stat.S_ISCHR(null.stat().st_mode) and null.stat().st_mode & 0o777 == 0o666
    # A pipe nobody reads is refused at once, not waited for.
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(transport.RemoteError, match="No such device or address"):
        ctx.put(str(source), str(pipe))
    assert ctx.call(pow, 2, 5) == 32
    pipe.unlink()
    assert sorted(os.listdir(tmp_path)) == ["backing", "linked", "mounted", "null",
                                            "other-name", "source"]


def test_a_replaced_file_keeps_its_extended_attributes_but_not_capabilities(router, tmp_path):
    ctx = router.local(python=PY)
    source = tmp_path / "source"
    source.write_bytes(b"new content")
    existing = tmp_path / "tool"
    existing.write_bytes(b"old")
    os.setxattr(existing, "user.origin", b"ops")
    # cap_net_raw+ep as `setcap` writes it: revision 2 and the effective flag, then the
    # permitted and inheritable sets (little-endian, two 32-bit words each)
    os.setxattr(existing, "security.capability",
                bytes.fromhex("01000002") + (1 << 13).to_bytes(4, "little") + bytes(12))
    ctx.put(str(source), str(existing))
    assert existing.read_bytes() == b"new content"
    assert os.getxattr(existing, "user.origin") == b"ops"
    assert "security.capability" not in os.listxattr(existing)


def test_a_user_writes_in_place_what_it_may_write_but_not_replace(router, sshd):
    import pwd
    import tempfile

    plain = pwd.getpwnam("tp-plain")
    ctx = _ssh(router, sshd)
    top = tempfile.mkdtemp(prefix="transport-test-in-place-")
    try:
        os.chmod(top, 0o755)
        closed = os.path.join(top, "closed")  # a directory tp-plain cannot write
        os.mkdir(closed)
        mine = os.path.join(closed, "mine.conf")  # ... holding a file it may write
        with open(mine, "w") as f:
            f.write("old")
        os.chown(mine, plain.pw_uid, plain.pw_gid)
        shared = os.path.join(top, "shared")  # a directory it can write
        os.mkdir(shared)
        os.chown(shared, plain.pw_uid, plain.pw_gid)
        roots = os.path.join(shared, "roots.conf")  # ... holding root's file it may write
        with open(roots, "w") as f:
            f.write("old")
        os.chmod(roots, 0o666)
        source = os.path.join(top, "source")
        with open(source, "w") as f:
            f.write("new content")
        os.chmod(source, 0o644)
        ctx.put(source, mine, mode=0o600)
        ctx.put(source, roots)  # its owner's mode stays, as with scp
        for path, owner, mode in ((mine, plain.pw_uid, 0o600), (roots, 0, 0o666)):
            with open(path) as f:
                assert f.read() == "new content"
            st = os.stat(path)
            assert (st.st_uid, st.st_mode & 0o777) == (owner, mode)
        assert os.listdir(closed) == ["mine.conf"] and os.listdir(shared) == ["roots.conf"]
        assert not glob.glob("/tmp/.mine.conf.tp-*")  # the temporary file it used instead
        # Root's file that it may not write stays as it was, with a clear error; so does
        # its own read-only file, which renaming could replace (scp refuses it too).
        os.chmod(roots, 0o644)
        read_only = os.path.join(shared, "read-only.conf")
        with open(read_only, "w") as f:
            f.write("kept")
        os.chown(read_only, plain.pw_uid, plain.pw_gid)
        os.chmod(read_only, 0o444)
        for path in (roots, read_only):
            with pytest.raises(transport.RemoteError, match="Permission denied"):
                ctx.put(source, path)
        with open(roots) as f:
            assert f.read() == "new content"
        with open(read_only) as f:
            assert f.read() == "kept"
        assert sorted(os.listdir(shared)) == ["read-only.conf", "roots.conf"]
    finally:
        import shutil

        shutil.rmtree(top)


@pytest.mark.parametrize("label", ["2.7", "3.6", "3.13"])
def test_non_ascii_paths_under_the_c_locale(router, label, tmp_path, monkeypatch):
    # Python 2.7 and 3.6 under the C locale (ssh with no locale, cron) take text for
    # the system as ASCII; names reach the disk as UTF-8, as on 3.7+.
    from tests.support.interpreters import find_interpreters
    from transport.core import files

    monkeypatch.setenv("LC_ALL", "C")
    monkeypatch.setenv("LANG", "C")
    ctx = router.local(python=find_interpreters()[label])
    (tmp_path / "source").write_bytes(b"data")
    there = str(tmp_path / "caf\u00e9")
    assert ctx.put(str(tmp_path / "source"), there) == 4
    assert (tmp_path / "caf\u00e9").read_bytes() == b"data"
    ctx.call(files.change_mode, there, 0o600)  # what Fabric's put uses
    assert ctx.call(files.path_stat, there).st_mode & 0o777 == 0o600
    assert ctx.get(there, str(tmp_path / "back")) == 4
    assert (tmp_path / "back").read_bytes() == b"data"
    with pytest.raises(transport.RemoteError) as failed:
        ctx.get(str(tmp_path / "\u00e9t\u00e9"), str(tmp_path / "other"))
    assert failed.value.remote_type.endswith(("FileNotFoundError", "OSError"))
    (tmp_path / "dossier-\u00e9").mkdir()
    with pytest.raises(transport.RemoteError, match="Is a directory"):
        ctx.get(str(tmp_path / "dossier-\u00e9"), str(tmp_path / "other"))


def test_a_long_name_of_many_byte_characters_is_received(router, tmp_path):
    # 120 characters of two bytes each: a legal name (240 bytes) whose temporary file's
    # name must still fit in 255 bytes.
    ctx = router.local(python=PY)
    (tmp_path / "source").write_bytes(b"data")
    there = tmp_path / ("\u00e9" * 120)
    assert ctx.put(str(tmp_path / "source"), str(there)) == 4
    assert there.read_bytes() == b"data"
    assert ctx.get(str(there), str(tmp_path / ("\u00fc" * 120))) == 4


@pytest.mark.parametrize("label", ["2.7", "3.6", "3.13"])
def test_a_name_that_is_not_utf8_goes_back_as_it_came(router, label, tmp_path):
    # A name in another encoding (Latin-1 here) reads as text with escapes; given back,
    # it names the same file.
    from tests.support.interpreters import find_interpreters

    directory = os.fsencode(tmp_path)
    with open(os.path.join(directory, b"caf\xe9.txt"), "wb") as f:
        f.write(b"latin")
    ctx = router.local(python=find_interpreters()[label])
    names = ctx.call(os.listdir, str(tmp_path))
    assert names == ["caf\udce9.txt"]
    there = os.path.join(str(tmp_path), names[0])
    assert ctx.get(there, str(tmp_path / "back")) == 5
    assert ctx.run(["cat", there]).stdout == b"latin"
