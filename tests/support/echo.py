"""A TCP echo server for the port-forwarding tests (the core's and salt-ssh's)."""

from __future__ import annotations

import socket
import threading


class EchoServer:
    """A TCP server on 127.0.0.1 that echoes what it reads until end of file, then says
    which user's socket connected to it (the uid owning the client's end)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.uids: list[int] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:  # stopped
                return
            threading.Thread(target=self._echo, args=(conn, peer), daemon=True).start()

    def stop(self) -> None:
        """Stop listening (shut down first: a close alone leaves the accept() under way,
        and the kernel goes on accepting)."""
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _echo(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        self.uids.append(_socket_owner(peer[1], self.port))
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)


def _socket_owner(port: int, server_port: int) -> int:
    """The uid owning the client's end: the socket from port to server_port (not one
    an earlier connection left on that port, in TIME_WAIT and owned by no one)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)) == (
                    port, server_port) and fields[3] != "06":  # 06: TIME_WAIT
                return int(fields[7])
    raise AssertionError(f"no socket from local port {port} to {server_port}")
