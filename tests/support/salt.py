"""A private salt-ssh setup: master config and a roster of stock and fast hosts on the test sshd.

Used by the salt tests and by the benchmark. Every host gets a fresh thin_dir
per setup: master and targets share this machine, and salt-ssh's master
caches files under the targets' thin_dir paths as root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from tests.support.sshd import LOGIN_PASSWORD, PASSWORD_USER

SALT_SSH = Path(sys.executable).parent / "salt-ssh"
STATES = Path(__file__).resolve().parent.parent / "projects" / "salt_states"
SET_PATH_DIR = "/tmp/transport-salt-set-path"  # the fastsetpath host's set_path puts it first
SLOW_PYTHON_DIR = "/tmp/transport-salt-slow-python"  # the fastslow host's, with timeout: 1
KEY_PASSPHRASE = "salt 'key' phrase"  # the stockphrase and fastphrase hosts' priv_passwd


class SaltSetup:
    """The config dir and roster under root; run() runs salt-ssh with them."""

    def __init__(self, root: Path, sshd, sudo_password: str) -> None:
        self.root = root
        self.conf = root / "conf"
        self.conf.mkdir()
        data = root / "data"
        (self.conf / "master").write_text(f"""root_dir: {data}
pki_dir: {data}/pki
cachedir: {data}/cache
sock_dir: {data}/sock
log_file: {data}/master.log
ssh_log_file: {data}/ssh.log
known_hosts_file: {sshd.known_hosts}
thin_extra_mods: iniconfig
file_roots:
  base:
    - {STATES}
""")
        # known_hosts_file: the test sshd's own keys. Without it stock salt-ssh reads root's
        # ~/.ssh/known_hosts, where an earlier run's sshd on the same port left another key.
        # A fresh thin_dir per host and run: master and targets share this machine, and
        # salt-ssh's master caches files under the targets' thin_dir paths as root.
        run_id = uuid.uuid4().hex[:8]

        def entry(name: str, address: str, user: str, extra: str = "") -> str:
            return (f"{name}:\n  host: {address}\n  user: {user}\n  port: {sshd.port}\n"
                    f"  priv: {sshd.client_key}\n  thin_dir: /var/tmp/tp-salt-{run_id}-{name}\n"
                    + extra)

        refused_key = root / "refused_key"  # a key the test sshd accepts for nobody
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(refused_key)],
                       check=True)
        # A key with a passphrase, authorised for the password user while this setup lives.
        encrypted_key = root / "encrypted_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", KEY_PASSPHRASE, "-f",
                        str(encrypted_key)], check=True)
        self._revoke_key = sshd.authorize(PASSWORD_USER, (root / "encrypted_key.pub").read_text())
        (self.conf / "roster").write_text(
            entry("stock", sshd.addresses[0], "tp-plain")
            + entry("fast", sshd.addresses[1], "tp-app", "  transport: fast\n")
            + entry("fastsudo", sshd.addresses[2], "tp-sudo",
                    f"  sudo: true\n  passwd: {sudo_password}\n"
                    "  transport: {kind: fast, python: /usr/bin/python3}\n")
            + entry("fastnobody", sshd.addresses[2], "tp-sudo",
                    f"  sudo: true\n  sudo_user: nobody\n  passwd: {sudo_password}\n"
                    "  transport: fast\n")
            + entry("fastsetpath", sshd.addresses[1], "tp-app",
                    f"  transport: fast\n  set_path: {SET_PATH_DIR}:$PATH\n")
            + entry("fastslow", sshd.addresses[1], "tp-app",
                    f"  transport: fast\n  set_path: {SLOW_PYTHON_DIR}:$PATH\n  timeout: 1\n")
            + entry("fasthomepath", sshd.addresses[1], "tp-app",
                    "  transport: fast\n  set_path: $HOME/transport-set-path:$PATH\n")
            + entry("refused", sshd.addresses[1], "tp-app", "  transport: fast\n  tty: true\n")
            + entry("relenv", sshd.addresses[1], "tp-app", "  transport: fast\n  relenv: true\n")
            + entry("fastumask", sshd.addresses[1], "tp-app",
                    "  transport: fast\n  cmd_umask: \"027\"\n")
            + entry("fastbadoption", sshd.addresses[1], "tp-app",
                    "  transport: fast\n  ssh_options: [ConnectTimeout]\n")
            + entry("fastspacedoption", sshd.addresses[1], "tp-app",
                    "  transport: fast\n  ssh_options: ['ConnectTimeout 20']\n")
            + entry("stockpass", sshd.addresses[0], PASSWORD_USER,
                    f"  passwd: {json.dumps(LOGIN_PASSWORD)}\n")
            + entry("fastpass", sshd.addresses[1], PASSWORD_USER,
                    f"  passwd: {json.dumps(LOGIN_PASSWORD)}\n  transport: fast\n")
            + entry("fastnopasswd", sshd.addresses[1], PASSWORD_USER, "  transport: fast\n")
            + entry("fastpasswrong", sshd.addresses[1], PASSWORD_USER,
                    "  passwd: not-it\n  transport: fast\n")
            + entry("stockphrase", sshd.addresses[0], PASSWORD_USER,
                    f"  priv_passwd: {json.dumps(KEY_PASSPHRASE)}\n").replace(
                str(sshd.client_key), str(encrypted_key))
            + entry("fastphrase", sshd.addresses[1], PASSWORD_USER,
                    f"  priv_passwd: {json.dumps(KEY_PASSPHRASE)}\n  transport: fast\n").replace(
                str(sshd.client_key), str(encrypted_key))
            + entry("fastbadkey", sshd.addresses[1], "tp-app", "  transport: fast\n")
            .replace(str(sshd.client_key), str(refused_key)))
        self.thin_dirs = f"/var/tmp/tp-salt-{run_id}-*"

    def run(self, target: str, *args: str, conf: Path | None = None,
            accept_keys: bool = True, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        return subprocess.run([str(SALT_SSH), "-c", str(conf or self.conf),
                               *(["-i"] if accept_keys else []), "--out", "json", "--static",
                               *(["-L"] if "," in target else []), target, *args],
                              capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=300, cwd=self.root)

    def json(self, target: str, *args: str, conf: Path | None = None,
             accept_keys: bool = True, env: dict[str, str] | None = None
             ) -> tuple[dict, subprocess.CompletedProcess]:
        result = self.run(target, *args, conf=conf, accept_keys=accept_keys, env=env)
        try:
            return json.loads(result.stdout), result
        except ValueError:
            raise AssertionError(f"salt-ssh printed no JSON (status {result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}") from None

    def remove_thin_dirs(self) -> None:
        """Remove what the setup left outside its directory (the hosts' thin_dirs, the
        password user's authorised key)."""
        import glob
        import shutil

        for path in glob.glob(self.thin_dirs):
            shutil.rmtree(path, ignore_errors=True)
        if self._revoke_key is not None:
            self._revoke_key()
            self._revoke_key = None
