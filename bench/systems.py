"""The systems under comparison, each behind the same small interface.

A system opens a connection to a local target interpreter and offers the
operations the figures time: a trivial call, a batch of pipelined calls, the
target's pid. Peers are used as shipped: their documented entry points and
defaults.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any


class Connection:
    """One open connection to a target, as the figures use it."""

    def call_trivial(self) -> Any:
        raise NotImplementedError

    def pipelined(self, count: int) -> None:
        raise NotImplementedError

    def target_pid(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class System:
    name = ""
    # A script run as `python -c SCRIPT TARGET_PYTHON`: import, connect, one call, exit.
    cold_script = ""

    def connect_local(self, python: str) -> Connection:
        raise NotImplementedError


class TransportConnection(Connection):
    def __init__(self, python: str) -> None:
        import transport

        self.router = transport.Router()
        self.ctx = self.router.local(python=python)

    def call_trivial(self) -> Any:
        return self.ctx.call(os.getpid)

    def pipelined(self, count: int) -> None:
        futures = [self.ctx.call_async(os.getpid) for _ in range(count)]
        for future in futures:
            future.result()

    def target_pid(self) -> int:
        return self.ctx.pid

    def close(self) -> None:
        self.router.close()


class TransportSystem(System):
    name = "transport"
    cold_script = textwrap.dedent("""
        import os, sys, transport
        with transport.Router() as router:
            router.local(python=sys.argv[1]).call(os.getpid)
    """)

    def connect_local(self, python: str) -> Connection:
        return TransportConnection(python)


class MitogenConnection(Connection):
    def __init__(self, python: str) -> None:
        import mitogen.master

        self.broker = mitogen.master.Broker()
        self.router = mitogen.master.Router(self.broker)
        self.ctx = self.router.local(python_path=python)

    def call_trivial(self) -> Any:
        return self.ctx.call(os.getpid)

    def pipelined(self, count: int) -> None:
        receivers = [self.ctx.call_async(os.getpid) for _ in range(count)]
        for receiver in receivers:
            receiver.get().unpickle()

    def target_pid(self) -> int:
        return self.ctx.call(os.getpid)

    def close(self) -> None:
        self.broker.shutdown()
        self.broker.join()


class MitogenSystem(System):
    name = "mitogen"
    cold_script = textwrap.dedent("""
        import os, sys, mitogen.master
        broker = mitogen.master.Broker()
        router = mitogen.master.Router(broker)
        router.local(python_path=sys.argv[1]).call(os.getpid)
        broker.shutdown()
        broker.join()
    """)

    def connect_local(self, python: str) -> Connection:
        return MitogenConnection(python)


ECHO_PID = "import os\nwhile 1:\n    channel.receive()\n    channel.send(os.getpid())\n"


class ExecnetConnection(Connection):
    """execnet has no remote function call; its idiom is a channel to remote code."""

    def __init__(self, python: str) -> None:
        import execnet

        self.gateway = execnet.makegateway(f"popen//python={python}")
        self.channel = self.gateway.remote_exec(ECHO_PID)

    def call_trivial(self) -> Any:
        self.channel.send(None)
        return self.channel.receive()

    def pipelined(self, count: int) -> None:
        for _ in range(count):
            self.channel.send(None)
        for _ in range(count):
            self.channel.receive()

    def target_pid(self) -> int:
        return self.call_trivial()

    def close(self) -> None:
        self.gateway.exit()


class ExecnetSystem(System):
    name = "execnet"
    cold_script = textwrap.dedent("""
        import sys, execnet
        gateway = execnet.makegateway("popen//python=" + sys.argv[1])
        channel = gateway.remote_exec("import os; channel.send(os.getpid())")
        channel.receive()
        gateway.exit()
    """)

    def connect_local(self, python: str) -> Connection:
        return ExecnetConnection(python)


ALL = [TransportSystem(), MitogenSystem(), ExecnetSystem()]
