"""FabricRunner: the transport runner as Fabric's Connection uses it.

Commands run under the login shell of the user Fabric connects as, as sshd
runs them for stock Fabric (c.sudo's too: stock's sudo command line is read
by that shell, and the sudo user's may be nologin); a pty has our terminal's
size (or 80 by 24) and TERM=vt100, as stock Fabric asks sshd for; results
are fabric.runners.Result (with .connection). ShellRunner runs the login
shell itself, for Connection.shell().
"""

from __future__ import annotations

import os
from typing import Any

from fabric.runners import Result

import transport
from adapters.invoke.runner import TransportRunner


class FabricRunner(TransportRunner):
    """TransportRunner for a Connection: runs on its context, or on .target (sudo)."""

    TIMED_OUT_EXIT = -1  # as stock Fabric's channel reports it
    # What echo shows before a c.sudo command: the sudo command line stock Fabric runs,
    # though the command runs in the sudo user's interpreter here (Connection.sudo).
    echo_prefix = ""

    def echo(self, command: str) -> None:
        super().echo(self.echo_prefix + command)

    def generate_env(self, env: dict[str, Any], replace_env: bool) -> dict[str, Any]:
        # Fabric asks for replace_env so that the controller's environment stays home;
        # the host's own is kept, as sshd's is for stock Fabric.
        return super().generate_env(env, False)

    def place_env(self, command: str | None,
                  env: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        # As stock Fabric 3 with inline_ssh_env (its default): `export K=V && ` before
        # the command line, unquoted, so that values are text and the shell expands them
        # (env={"PATH": "/opt/bin:$PATH"}). Without it, or without a command line
        # (shell()), stock asks sshd to set them; here they travel as data, as text.
        if not env:
            return command, env
        if self.inline_env and command is not None:
            parameters = " ".join(f"{key}={value}" for key, value in sorted(env.items()))
            return f"export {parameters} && {command}", {}
        return command, {key: str(value) for key, value in env.items()}

    def resolve_target(self) -> transport.Context:
        return self.context.transport_context()

    def _sudo_target(self, via: transport.Context, user: str, password: str | None,
                     command: str) -> None:
        # Connection.sudo chose already: a sudo command line here runs under sudo (with
        # -n when no password was given).
        return None

    def terminal_env(self) -> dict[str, str]:
        # Stock Fabric's pty request (paramiko's get_pty) names the terminal type vt100,
        # and sshd gives it to the command as TERM.
        return {"TERM": "vt100"}

    def shell_argv(self, shell: str, command: str) -> tuple[list[str], str | None]:
        # As sshd runs a command line: the login shell, named without its path ($0 is
        # "bash", and so are its error messages' prefixes).
        login_shell = self.context.login_shell()
        return [os.path.basename(login_shell), "-c", command], login_shell

    def returncode(self) -> int | None:
        # A command ended by a signal: stock Fabric's channel has no exit status, only
        # the signal's name, and reports -1 (as ssh itself exits 255).
        code = super().returncode()
        return -1 if code is not None and code < 0 else code

    def generate_result(self, **kwargs: Any) -> Result:
        kwargs["connection"] = self.context
        return Result(**kwargs)


class ShellRunner(FabricRunner):
    """The runner of Connection.shell(): the login shell itself, interactive on its pty."""

    def shell_argv(self, shell: str, command: str | None) -> tuple[list[str], str | None]:
        # A login shell, as sshd starts one: its name with a leading "-".
        login_shell = self.context.login_shell()
        return ["-" + os.path.basename(login_shell)], login_shell
