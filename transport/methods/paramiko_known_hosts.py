"""Known hosts files for the paramiko backend: indexed once, new keys appended.

paramiko's own HostKeys reads and parses the whole file again for every
connection, checking each line against every line before it (with 1,000 hosts
listed under hashed names, 0.5 s of the controller's CPU per connection, under
the one GIL a fan-out shares); a @cert-authority line fails the load; and its
accept-new policy rewrites the whole file from what it parsed, so comments,
marker lines, keys of types it does not know and the grouping of names are
lost, and connections that accept keys at the same time truncate each other's
writes.

Here a file is read for each connection but indexed by host name only when its
content changed, the key of a line is parsed only when a host it names is
connected to (once per process), and a client is given only the keys listed
for the name paramiko looks its host up by (`host`, or `[host]:port` off port
22), hashed names included. A key accepted under accept-new is appended to the
file as one line, as ssh does. Marker lines (@cert-authority, @revoked) are
skipped and names are matched literally, not as patterns: what paramiko has
always done (the openssh backend honours both)."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import threading
from typing import Any

import paramiko
from paramiko.hostkeys import HostKeyEntry

from transport import log

_lock = threading.Lock()  # guards _files and what they hold, and appends (a line at a time)
_files: dict[str, _KnownHostsFile] = {}


class _KnownHostsFile:
    """One version (content) of a known hosts file, indexed by host name; a line's key is
    parsed when a host it names is looked up."""

    def __init__(self, content: bytes, before: _KnownHostsFile | None) -> None:
        self.content = content
        self.lines: list[str] = []
        self.plain: dict[str, list[int]] = {}  # name -> indexes into lines, in file order
        self.hashed: list[tuple[bytes, bytes, int]] = []  # (salt, digest, index)
        self._matches: dict[str, list[Any]] = {}
        for line in content.decode("utf-8", "replace").splitlines():
            line = line.strip()
            fields = re.split("[ \t]", line)  # (paramiko's split: "a  b" is not two fields)
            if line.startswith(("#", "@")) or len(fields) < 3:
                continue  # a comment, a marker line, or no key
            index = len(self.lines)
            self.lines.append(line)
            for name in fields[0].split(","):
                if name.startswith("|1|"):
                    salt_digest = _hashed_name(name)
                    if salt_digest:
                        self.hashed.append((*salt_digest, index))
                else:
                    self.plain.setdefault(name, []).append(index)
        # line -> HostKeyEntry, or None if unusable: what the version before parsed is kept
        kept = set(self.lines)
        self.parsed = {line: entry for line, entry in before.parsed.items()
                       if line in kept} if before is not None else {}

    def matching(self, name: str) -> list[Any]:
        """The usable entries that list name, in file order."""
        found = self._matches.get(name)
        if found is None:
            encoded = name.encode("utf-8")
            indexes = set(self.plain.get(name, ()))
            indexes.update(index for salt, digest, index in self.hashed
                           if hmac.compare_digest(hmac.digest(salt, encoded, "sha1"), digest))
            entries = (self._entry(self.lines[index]) for index in sorted(indexes))
            found = self._matches[name] = [entry for entry in entries if entry is not None]
        return found

    def _entry(self, line: str) -> Any:
        if line not in self.parsed:
            try:
                self.parsed[line] = HostKeyEntry.from_line(line)
            except Exception:  # a key that does not decode, of a type paramiko lacks ...
                self.parsed[line] = None
        return self.parsed[line]


def _hashed_name(name: str) -> tuple[bytes, bytes] | None:
    """(salt, digest) of a hashed name, |1|<salt>|<digest> (None if malformed)."""
    parts = name.split("|")
    if len(parts) != 4:
        return None
    try:
        return base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except (binascii.Error, ValueError):
        return None


def _read(path: str) -> _KnownHostsFile | None:
    """The file at path, indexed (None if there is none); OSError if it cannot be read.
    Called with _lock held."""
    try:
        with open(path, "rb") as f:
            content = f.read()
    except FileNotFoundError:
        _files.pop(path, None)
        return None
    known = _files.get(path)
    if known is None or known.content != content:
        known = _files[path] = _KnownHostsFile(content, known)
    return known


def lookup_name(host: str, port: int) -> str:
    """The name paramiko looks a host's keys up by (and OpenSSH records them under)."""
    return host if port == 22 else f"[{host}]:{port}"


def give_known_keys(client: Any, paths: list[str], name: str) -> list[str]:
    """Give client the keys the files at paths list for name: the first of each type, the
    one paramiko would compare with; return their types, in file order. OSError if a
    file exists but cannot be read."""
    with _lock:
        entries = []
        for path in paths:
            known = _read(path)
            entries += known.matching(name) if known is not None else []
    keys, types = client.get_host_keys(), []
    for entry in entries:
        key_type = entry.key.get_name()
        if key_type not in types:
            types.append(key_type)
            keys.add(name, key_type, entry.key)
    return types


class AppendNewKeys(paramiko.MissingHostKeyPolicy):
    """accept-new: a host with no known key is accepted, and its key appended to the file
    at path as one line (with path None, kept for this connection only)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.path is None:
            return
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n".encode()
        try:
            with _lock:
                known = _read(self.path)  # another connection may have added it meanwhile
                if known is not None and any(entry.key.asbytes() == key.asbytes()
                                             for entry in known.matching(hostname)):
                    return
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        line = b"\n" + line
                    os.write(fd, line)
                finally:
                    os.close(fd)
        except OSError as e:  # accepted all the same, as ssh warns and goes on
            log.warning("transport", "%s: its host key is not kept: cannot add it to %s: %s",
                        hostname, self.path, e.strerror)
