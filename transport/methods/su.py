"""The su method: become another user with su, on the controller or through `via`.

su has no option for a prompt of our own, so it runs under LC_ALL=C, where
its prompt is always "Password:"; it reads the answer from its stdin, a pipe
(no terminal is needed), before the payload, which is held back until the
first stage announces itself. A refused password ends su with
"Authentication failure", which fails the attempt at once. su runs the
interpreter through the target user's login shell (`su USER -c COMMAND`).
The password never appears in arguments, logs, exception messages or reprs.
"""

from __future__ import annotations

import shlex

from transport.errors import AuthError, ConnectError
from transport.methods.local import python_start_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from transport.bootstrap import Bootstrap

PROMPT = "Password:"
AUTH_REFUSED = ("Authentication failure", "incorrect password", "Permission denied",
                "does not exist", "must be run from a terminal")


class SuMethod:
    """Run `python` as `user` under su."""

    def __init__(self, user: str = "root", *, password: str | None = None,
                 python: str | None = None, su_path: str = "su") -> None:
        self.user = user
        self._password = password
        self.python = python or "python3"
        self.su_path = su_path
        self.host = "localhost"

    def __repr__(self) -> str:
        secret = "set" if self._password is not None else "none"
        return f"SuMethod(user={self.user!r}, python={self.python!r}, password={secret})"

    def default_name(self) -> str:
        return f"su:{self.user}"

    def argv(self, bootstrap: Bootstrap) -> list[str]:
        command = " ".join(shlex.quote(arg) for arg in bootstrap.python_argv(self.python))
        return ["env", "LC_ALL=C", self.su_path, self.user, "-c", command]

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"prompt": PROMPT.encode(),
                                   "auth_failures": [t.encode() for t in AUTH_REFUSED]}
        if self._password is not None:
            options["password"] = self._password.encode()
        return options

    def connect_error(self, name: str, reason: str, details: dict[str, Any]) -> ConnectError:
        stderr = (details.get("stderr") or "").replace(PROMPT, "")
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        if details.get("auth") or any(text in stderr for text in AUTH_REFUSED):
            said = lines[-1] if lines else ""
            return AuthError(name, f"su to {self.user} refused: {reason}" + (f": {said}" if said else ""))
        return python_start_error(name, self.python, reason, details)
