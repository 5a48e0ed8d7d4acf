"""What sudo and su share: a user to become, a password kept secret, refusals as AuthError."""

from __future__ import annotations

from transport.errors import AuthError, ConnectError
from transport.methods.local import check_secret, python_start_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class BecomeMethod:
    """Base of SudoMethod and SuMethod. The password shows in no repr, argument or message."""

    tool = ""
    prompt = ""
    auth_refused: tuple[str, ...] = ()

    def __init__(self, user: str = "root", *, password: str | None = None,
                 python: str | list[str] | None = None, path: str | None = None) -> None:
        if not isinstance(user, str):
            raise TypeError(f"user is a user name, not {user!r}")
        if not user or user.startswith("-") or any(c.isspace() or not c.isprintable() for c in user):
            # su would read "-s/bin/sh" or "--command=..." as an option of its own
            raise ValueError(f"{user!r} is not a user name")
        if password is not None and not isinstance(password, str):
            raise TypeError(f"password is a str, not {type(password).__name__}")  # never shown
        check_secret("password", password)
        self.user = user
        self._password = password
        self.python = python or "python3"
        self.path = path or self.tool
        self.host = "localhost"

    def __repr__(self) -> str:
        secret = "set" if self._password is not None else "none"
        return f"{type(self).__name__}(user={self.user!r}, python={self.python!r}, password={secret})"

    def default_name(self) -> str:
        return f"{self.tool}:{self.user}"

    def connect_error(self, name: str, reason: str, details: dict[str, Any]) -> ConnectError:
        stderr = (details.get("stderr") or "").replace(self.prompt, "")
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        if details.get("auth") or any(text in stderr for text in self.auth_refused):
            said = next((line for line in reversed(lines) if any(t in line for t in self.auth_refused)),
                        lines[-1] if lines else "")
            needed = (self._password is None and "a password is required" in said
                      and " (no password was given)")
            return AuthError(name, f"{self.tool} to {self.user} refused: {reason}"
                             + (f": {said}" if said else "") + (needed or ""))
        return self.other_error(name, reason, details, lines)

    @property
    def program(self) -> str:
        """What is started (argv[0]): the tool."""
        return self.path

    def other_error(self, name: str, reason: str, details: dict[str, Any],
                    lines: list[str]) -> ConnectError:
        return python_start_error(name, self.python, reason, details, program=self.program,
                                  login_shell=self.tool == "su")
