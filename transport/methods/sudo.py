"""The sudo method: become another user with sudo, on the controller or through `via`.

With a password, sudo runs with -S and a prompt of our own choosing: the
prompt arrives on stderr, the password goes to stdin before the payload
(held back until the first stage announces itself), and a second prompt
means the password was refused. Without one, sudo runs with -n, so a rule
that needs a password fails at once instead of waiting. No terminal is
involved, so the bulk channel stays a pipe and the password is never echoed.
The password never appears in arguments, logs, exception messages or reprs.
"""

from __future__ import annotations

from transport.errors import AuthError, ConnectError
from transport.methods.local import python_start_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from transport.bootstrap import Bootstrap

PROMPT = "[transport:sudo:password]"
AUTH_REFUSED = ("is not in the sudoers file", "is not allowed to execute", "a password is required",
                "incorrect password attempt", "Sorry, try again", "may not run sudo",
                "Authentication failure", "account validation failure")


class SudoMethod:
    """Run `python` as `user` under sudo."""

    def __init__(self, user: str = "root", *, password: str | None = None,
                 python: str | None = None, sudo_path: str = "sudo",
                 sudo_args: tuple[str, ...] = ()) -> None:
        self.user = user
        self._password = password
        self.python = python or "python3"
        self.sudo_path = sudo_path
        self.sudo_args = tuple(sudo_args)
        self.host = "localhost"

    def __repr__(self) -> str:
        secret = "set" if self._password is not None else "none"
        return f"SudoMethod(user={self.user!r}, python={self.python!r}, password={secret})"

    def default_name(self) -> str:
        return f"sudo:{self.user}"

    def argv(self, bootstrap: Bootstrap) -> list[str]:
        mode = ["-S", "-p", PROMPT] if self._password is not None else ["-n"]
        return [self.sudo_path, *mode, "-H", "-u", self.user, *self.sudo_args, "--",
                *bootstrap.python_argv(self.python)]

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"auth_failures": [t.encode() for t in AUTH_REFUSED[:2]]}
        if self._password is not None:
            options["prompt"] = PROMPT.encode()
            options["password"] = self._password.encode()
        return options

    def connect_error(self, name: str, reason: str, details: dict[str, Any]) -> ConnectError:
        stderr = (details.get("stderr") or "").replace(PROMPT, "")
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        if details.get("auth") or any(text in stderr for text in AUTH_REFUSED):
            said = next((line for line in reversed(lines) if any(t in line for t in AUTH_REFUSED)),
                        lines[-1] if lines else "")
            return AuthError(name, f"sudo to {self.user} refused: {reason}" + (f": {said}" if said else ""))
        if "must have a tty" in stderr:
            return ConnectError(name, "sudo requires a terminal here (requiretty): " + lines[-1])
        return python_start_error(name, self.python, reason, details)
