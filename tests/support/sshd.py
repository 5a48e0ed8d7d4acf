"""A private OpenSSH server on loopback and the test users it serves.

SshServer generates its own host and client keys in a work directory, listens
on a free port on one or more loopback addresses (127.0.0.2 and up need no
setup on Linux) and authorises the client key for root and the test users
through per-user files in that directory, so nothing outside it changes but
the users below. It needs root: sshd's privilege separation and other users'
logins require it.

TestUsers creates, when missing, users whose homes hold no shell rc files:
  tp-plain   key login, no sudo
  tp-sudo    sudo with a password (SUDO_PASSWORD)
  tp-nopw    password-less sudo
  tp-nosudo  not in sudoers
  tp-app     a target for su, with a password (APP_PASSWORD)
  tp-limited password-less sudo for `id` only, and only on a terminal (requiretty);
             a password (APP_PASSWORD)
  tp-zsh, tp-tcsh, tp-fish  users whose login shells are those (not POSIX sh, which
             reads the command ssh and su pass on), with a password (APP_PASSWORD)
  tp-pass    logs in with its password (LOGIN_PASSWORD) only: no key is authorised, and
             sshd takes keyboard-interactive and password logins from this user alone
pyenv's interpreters live under /root, which other users cannot enter; tests
that log in as these users use /usr/bin/python3.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

SSHD = "/usr/sbin/sshd"
SUDO_PASSWORD = "sudo-Pa55-word"
APP_PASSWORD = "app-Pa55-word"
# With what a shell or a careless quoting would change: spaces, quotes, a backslash, $,
# and a letter outside ASCII.
LOGIN_PASSWORD = " login 'Pa55' \\w\u00f6rd $HOME "
PASSWORD_USER = "tp-pass"
LOGIN_SHELLS = {"tp-zsh": "/usr/bin/zsh", "tp-tcsh": "/usr/bin/tcsh", "tp-fish": "/usr/bin/fish"}
USERS = ("tp-plain", "tp-sudo", "tp-nopw", "tp-nosudo", "tp-app", "tp-limited", *LOGIN_SHELLS,
         PASSWORD_USER)
SUDOERS_FILE = "/etc/sudoers.d/transport-tests"
INSTALL_HINT = ("run .ci/setup-system as root "
                "(apt-get install openssh-server sudo zsh tcsh fish)")
MAX_LISTEN = 15


class EnvironmentProblem(RuntimeError):
    """A part the tests need is missing; the message says how to install it."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("the ssh/sudo tests must run as root: they start sshd with "
                                 "privilege separation and create test users")


def ensure_users() -> None:
    """Create the test users and their sudoers rules (idempotent)."""
    require_root()
    for tool in ("useradd", "usermod", "chpasswd", "visudo"):
        if shutil.which(tool) is None:
            raise EnvironmentProblem(f"{tool} not found: {INSTALL_HINT}")
    for shell in LOGIN_SHELLS.values():
        if not os.access(shell, os.X_OK):
            raise EnvironmentProblem(f"{shell} not found: {INSTALL_HINT}")
    for user in USERS:
        shell = LOGIN_SHELLS.get(user, "/bin/sh")
        if subprocess.run(["id", "-u", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--create-home", "--skel", "/nonexistent", "--shell", shell,
                            user], check=True, capture_output=True)
        # A user an earlier run made may have lost its home (removed by hand) or its shell.
        entry = pwd.getpwnam(user)
        if entry.pw_shell != shell:
            subprocess.run(["usermod", "--shell", shell, user], check=True, capture_output=True)
        home = Path(entry.pw_dir)
        home.mkdir(mode=0o755, exist_ok=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        home.chmod(0o755)
        for rc in (".bashrc", ".profile", ".bash_logout"):
            (home / rc).unlink(missing_ok=True)
    passwords = (f"tp-sudo:{SUDO_PASSWORD}\ntp-app:{APP_PASSWORD}\ntp-plain:{APP_PASSWORD}\n"
                 f"tp-nosudo:{APP_PASSWORD}\ntp-limited:{APP_PASSWORD}\n"
                 + "".join(f"{user}:{APP_PASSWORD}\n" for user in LOGIN_SHELLS)
                 + f"{PASSWORD_USER}:{LOGIN_PASSWORD}\n")
    subprocess.run(["chpasswd"], input=passwords, text=True, check=True)
    rules = ("Defaults:tp-sudo !lecture, timestamp_timeout=0\n"
             "tp-sudo ALL=(ALL:ALL) ALL\n"
             "tp-nopw ALL=(ALL:ALL) NOPASSWD: ALL\n"
             "Defaults:tp-limited requiretty\n"
             "tp-limited ALL=(root) NOPASSWD: /usr/bin/id\n")
    staged = Path(SUDOERS_FILE + ".new")
    staged.write_text(rules)
    staged.chmod(0o440)
    subprocess.run(["visudo", "-cf", str(staged)], check=True, capture_output=True)
    staged.replace(SUDOERS_FILE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SshServer:
    """sshd on `addresses` at one free port, with keys and config in `workdir`."""

    def __init__(self, workdir: Path, addresses: tuple[str, ...] = ("127.0.0.1",),
                 port: int | None = None, more_host_keys: tuple[str, ...] = ()) -> None:
        """more_host_keys: key types (ssh-keygen -t) the server has besides its ed25519
        key, in host_key_<type>; known_hosts lists only the ed25519 one."""
        self.workdir = Path(workdir)
        self.more_host_keys = more_host_keys
        self.addresses = addresses
        self.port = port or free_port()
        self.client_key = self.workdir / "client_key"
        self.known_hosts = self.workdir / "known_hosts"
        self.log = self.workdir / "sshd.log"
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> SshServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        require_root()
        if not os.access(SSHD, os.X_OK):
            raise EnvironmentProblem(f"{SSHD} not found: {INSTALL_HINT}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        host_key = self.workdir / "host_key"
        host_keys = [host_key, *(self.workdir / f"host_key_{t}" for t in self.more_host_keys)]
        for key, key_type in [(self.client_key, "ed25519"), (host_key, "ed25519"),
                              *zip(host_keys[1:], self.more_host_keys)]:
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(key)],
                               check=True)
        # sshd reads authorized keys as the user logging in: every directory on the
        # way must be searchable by the test users.
        self.workdir.chmod(0o755)
        keys_dir = self.workdir / "authorized_keys"
        keys_dir.mkdir(mode=0o755, exist_ok=True)
        public = (self.workdir / "client_key.pub").read_text()
        for user in ("root", *USERS):
            if user == PASSWORD_USER:
                continue
            (keys_dir / user).write_text(public)
            (keys_dir / user).chmod(0o644)
        host_public = (self.workdir / "host_key.pub").read_text().split()[:2]
        self.known_hosts.write_text("".join(f"[{a}]:{self.port} {' '.join(host_public)}\n"
                                            for a in self.addresses))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        # One sshd listens on at most 16 sockets: more addresses take more servers.
        for index in range(0, len(self.addresses), MAX_LISTEN):
            self._start_one(index // MAX_LISTEN, self.addresses[index:index + MAX_LISTEN],
                            host_keys, keys_dir)

    def _start_one(self, number: int, addresses: tuple[str, ...], host_keys: list[Path],
                   keys_dir: Path) -> None:
        config = self.workdir / f"sshd_config.{number}"
        log = self.log if number == 0 else self.workdir / f"sshd.{number}.log"
        config.write_text("".join(f"ListenAddress {a}:{self.port}\n" for a in addresses)
                          + "".join(f"HostKey {key}\n" for key in host_keys) + f"""\
PidFile {self.workdir}/sshd.{number}.pid
AuthorizedKeysFile {keys_dir}/%u
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
PermitRootLogin prohibit-password
UseDNS no
PrintMotd no
X11Forwarding no
MaxStartups 200
MaxSessions 200
LogLevel VERBOSE
Subsystem sftp internal-sftp
Match User {PASSWORD_USER}
    PasswordAuthentication yes
    KbdInteractiveAuthentication yes
""")
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
        process = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(log)])
        self.processes.append(process)
        deadline = time.monotonic() + 10
        for address in addresses:
            while True:
                try:
                    socket.create_connection((address, self.port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        text = log.read_text() if log.exists() else ""
                        self.stop()
                        raise EnvironmentProblem(
                            f"sshd did not start on {address}:{self.port}:\n{text}") from None
                    time.sleep(0.02)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []

    def authorize(self, user: str, public_key: str) -> Callable[[], None]:
        """Authorise one more key for user; returns what takes it back (and nothing else)."""
        path = self.workdir / "authorized_keys" / user
        line = public_key.strip() + "\n"
        with open(path, "a") as f:
            f.write(line)
        path.chmod(0o644)

        def revoke() -> None:
            remaining = [kept for kept in path.read_text().splitlines(keepends=True)
                         if kept != line]
            if remaining:
                path.write_text("".join(remaining))
            else:
                path.unlink()

        return revoke

    def ssh_options(self) -> dict[str, str]:
        """Client options for transport's ssh_options= (and ssh -o)."""
        return {"IdentityFile": str(self.client_key), "IdentitiesOnly": "yes",
                "UserKnownHostsFile": str(self.known_hosts), "StrictHostKeyChecking": "yes",
                "BatchMode": "yes"}

    def ssh_args(self, user: str, address: str | None = None) -> list[str]:
        """Arguments for the OpenSSH client: options, then the host."""
        args = ["-p", str(self.port), "-l", user]
        for key, value in self.ssh_options().items():
            args += ["-o", f"{key}={value}"]
        return args + [address or self.addresses[0]]
