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


class SshTarget:
    """Where ssh figures connect: the test sshd, as a user without shell rc files."""

    def __init__(self, server, user: str = "tp-plain", address: str = "127.0.0.1") -> None:
        self.server = server
        self.user = user
        self.address = address

    @property
    def port(self) -> int:
        return self.server.port

    def ssh_args(self) -> list[str]:
        return self.server.ssh_args(self.user, self.address)

    @property
    def key(self) -> str:
        return str(self.server.client_key)

    @property
    def known_hosts(self) -> str:
        return str(self.server.known_hosts)


class Connection:
    """One open connection to a target, as the figures use it."""

    def call_trivial(self) -> Any:
        raise NotImplementedError

    def pipelined(self, count: int) -> None:
        raise NotImplementedError

    def target_pid(self) -> int:
        raise NotImplementedError

    def render(self) -> str:
        """A call that needs jinja2, which the target does not have."""
        raise NotImplementedError

    def run_true(self) -> None:
        """Run the command `true` on the target."""
        raise NotImplementedError

    def push(self, local_path: str, remote_path: str) -> None:
        """Copy a local file to the target."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class System:
    name = ""
    # A script run as `python -c SCRIPT TARGET_PYTHON`: import, connect, one call, exit.
    cold_script = ""

    def connect_local(self, python: str) -> Connection:
        raise NotImplementedError

    def connect_ssh(self, target: SshTarget, python: str) -> Connection:
        raise NotImplementedError

    def cold_ssh_script(self, target: SshTarget, python: str) -> str:
        raise NotImplementedError


class TransportConnection(Connection):
    def __init__(self, python: str, ssh: SshTarget | None = None) -> None:
        import transport

        self.router = transport.Router()
        if ssh is None:
            self.ctx = self.router.local(python=python)
        else:
            self.ctx = self.router.ssh(ssh.address, port=ssh.port, user=ssh.user, python=python,
                                       ssh_options=ssh.server.ssh_options())

    def render(self) -> str:
        from bench import remote

        return self.ctx.call(remote.render, "{{ x }}", x="ok")

    def round_trips(self) -> int:
        return len(self.router._modules.requested.get(self.ctx.context_id, []))

    def run_true(self) -> None:
        self.ctx.run("true", check=True)

    def push(self, local_path: str, remote_path: str) -> None:
        self.ctx.put(local_path, remote_path)

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

    def connect_ssh(self, target: SshTarget, python: str) -> Connection:
        return TransportConnection(python, target)

    def fan_out(self, target: SshTarget, hosts: list[str], python: str) -> None:
        import transport

        with transport.Router() as router:
            group = transport.Group(router, hosts, user=target.user, port=target.port,
                                    python=python, concurrency=len(hosts), backend="paramiko",
                                    ssh_options=target.server.ssh_options())
            results = group.call(os.getpid)
            failed = results.failed
            if failed:
                raise RuntimeError(f"fan-out failed on {len(failed)} hosts: "
                                   f"{next(iter(failed.values())).error}")

    def cold_ssh_script(self, target: SshTarget, python: str) -> str:
        return textwrap.dedent(f"""
            import os, transport
            with transport.Router() as router:
                router.ssh({target.address!r}, port={target.port}, user={target.user!r},
                           python={python!r}, ssh_options={target.server.ssh_options()!r}
                           ).call(os.getpid)
        """)


def _mitogen_ssh_kwargs(target: SshTarget, python: str) -> dict:
    # Mitogen's own host-key handling does not know our known_hosts file: pass it through.
    return dict(hostname=target.address, port=target.port, username=target.user,
                python_path=python, identity_file=target.key,
                ssh_args=["-o", f"UserKnownHostsFile={target.known_hosts}"])


class MitogenConnection(Connection):
    def __init__(self, python: str, ssh: SshTarget | None = None) -> None:
        import mitogen.master

        self.broker = mitogen.master.Broker()
        self.router = mitogen.master.Router(self.broker)
        if ssh is None:
            self.ctx = self.router.local(python_path=python)
        else:
            self.ctx = self.router.ssh(**_mitogen_ssh_kwargs(ssh, python))

    def render(self) -> str:
        from bench import remote

        return self.ctx.call(remote.render, "{{ x }}", x="ok")

    def round_trips(self) -> int:
        responder = self.router.responder
        return int(getattr(responder, "get_module_count", 0))

    def run_true(self) -> None:
        import subprocess

        self.ctx.call(subprocess.check_call, "true", shell=True)

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

    def connect_ssh(self, target: SshTarget, python: str) -> Connection:
        return MitogenConnection(python, target)

    def cold_ssh_script(self, target: SshTarget, python: str) -> str:
        return textwrap.dedent(f"""
            import os, mitogen.master
            broker = mitogen.master.Broker()
            router = mitogen.master.Router(broker)
            router.ssh(**{_mitogen_ssh_kwargs(target, python)!r}).call(os.getpid)
            broker.shutdown()
            broker.join()
        """)


def _execnet_ssh_spec(target: SshTarget, python: str) -> str:
    args = " ".join(target.ssh_args()[:-1])
    return f"ssh={args} {target.address}//python={python}"


ECHO_PID = ("import os, subprocess\nwhile 1:\n    command = channel.receive()\n"
            "    channel.send(subprocess.call(command, shell=True) if command else os.getpid())\n")


class ExecnetConnection(Connection):
    """execnet has no remote function call; its idiom is a channel to remote code."""

    def __init__(self, python: str, ssh: SshTarget | None = None) -> None:
        import execnet

        spec = f"popen//python={python}" if ssh is None else _execnet_ssh_spec(ssh, python)
        self.gateway = execnet.makegateway(spec)
        self.channel = self.gateway.remote_exec(ECHO_PID)

    def render(self) -> str:
        raise NotImplementedError("execnet has no module forwarding")

    def run_true(self) -> None:
        self.channel.send("true")
        self.channel.receive()

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

    def connect_ssh(self, target: SshTarget, python: str) -> Connection:
        return ExecnetConnection(python, target)

    def cold_ssh_script(self, target: SshTarget, python: str) -> str:
        return textwrap.dedent(f"""
            import execnet
            gateway = execnet.makegateway({_execnet_ssh_spec(target, python)!r})
            channel = gateway.remote_exec("import os; channel.send(os.getpid())")
            channel.receive()
            gateway.exit()
        """)


class FabricConnection(Connection):
    """Fabric 3 (paramiko) as shipped: commands and sftp, no Python calls."""

    def __init__(self, target: SshTarget) -> None:
        import fabric

        self.connection = fabric.Connection(
            target.address, user=target.user, port=target.port,
            connect_kwargs={"key_filename": target.key, "look_for_keys": False,
                            "allow_agent": False})
        # Needed to connect at all: paramiko must know the test server's host key.
        self.connection.client.load_host_keys(target.known_hosts)
        self.connection.open()

    def call_trivial(self) -> Any:
        raise NotImplementedError("Fabric runs commands, not Python functions")

    def pipelined(self, count: int) -> None:
        raise NotImplementedError

    def target_pid(self) -> int:
        raise NotImplementedError

    def run_true(self) -> None:
        self.connection.run("true", hide=True)

    def push(self, local_path: str, remote_path: str) -> None:
        self.connection.put(local_path, remote_path)

    def close(self) -> None:
        self.connection.close()


def _fabric_settings(target: SshTarget) -> dict[str, Any]:
    return {"user": target.user, "port": target.port,
            "connect_kwargs": {"key_filename": target.key, "look_for_keys": False,
                               "allow_agent": False}}


def fabric_task_connections(target: SshTarget) -> list[tuple[str, Any]]:
    """(system, open()) pairs for the Fabric task figure; open() -> (connection, close)."""
    import fabric

    from adapters.fabric import Connection as TransportFabricConnection
    from adapters.invoke import Targets

    def stock() -> tuple[Any, Any]:
        connection = fabric.Connection(target.address, **_fabric_settings(target))
        # Needed to connect at all: paramiko must know the test server's host key.
        connection.client.load_host_keys(target.known_hosts)
        connection.open()
        return connection, connection.close

    def ours() -> tuple[Any, Any]:
        targets = Targets()
        config = fabric.Config(overrides={
            "transport": {"ssh_options": {"UserKnownHostsFile": target.known_hosts}}})
        connection = TransportFabricConnection(target.address, config=config, targets=targets,
                                               **_fabric_settings(target))
        connection.open()
        return connection, targets.close

    return [("transport", ours), ("fabric", stock)]


class FabricSystem(System):
    name = "fabric"

    def fan_out(self, target: SshTarget, hosts: list[str], python: str) -> None:
        import fabric

        group = fabric.ThreadingGroup(
            *hosts, user=target.user, port=target.port,
            connect_kwargs={"key_filename": target.key, "look_for_keys": False,
                            "allow_agent": False})
        for connection in group:
            connection.client.load_host_keys(target.known_hosts)
        try:
            group.run("true", hide=True)
        finally:
            group.close()

    def connect_local(self, python: str) -> Connection:
        raise NotImplementedError

    def connect_ssh(self, target: SshTarget, python: str) -> Connection:
        return FabricConnection(target)


class ScpConnection(Connection):
    """OpenSSH's scp: a file copy per command, the anchor for throughput."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target

    def push(self, local_path: str, remote_path: str) -> None:
        import subprocess

        options = [f"-o{key}={value}" for key, value in self.target.server.ssh_options().items()]
        subprocess.run(["scp", "-q", "-P", str(self.target.port), *options, local_path,
                        f"{self.target.user}@{self.target.address}:{remote_path}"], check=True)

    def close(self) -> None:
        pass


class ScpSystem(System):
    name = "scp"

    def connect_local(self, python: str) -> Connection:
        raise NotImplementedError

    def connect_ssh(self, target: SshTarget, python: str) -> Connection:
        return ScpConnection(target)


ALL = [TransportSystem(), MitogenSystem(), ExecnetSystem()]
ALL_SSH = ALL + [FabricSystem(), ScpSystem()]
FAN_OUT = [TransportSystem(), FabricSystem()]
