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

from transport.errors import ConnectError
from transport.methods.become import BecomeMethod
from transport.methods.local import program_not_found

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from transport.bootstrap import Bootstrap

PROMPT = "Password:"
# What starts su under LC_ALL=C: found at this path, whatever the PATH holds.
ENV = "/usr/bin/env"


class SuMethod(BecomeMethod):
    """Run `python` as `user` under su."""

    tool = "su"
    prompt = PROMPT
    auth_refused = ("Authentication failure", "incorrect password", "su: Permission denied",
                    "does not exist", "must be run from a terminal")

    def argv(self, bootstrap: Bootstrap) -> list[str]:
        # exec: su passes a signal on to its child only (in a session of its own), so the
        # shell becomes the interpreter that an attempt given up on must end.
        command = "exec " + bootstrap.shell_command(self.python)
        return [ENV, "LC_ALL=C", self.path, self.user, "-c", command]

    @property
    def program(self) -> str:
        return ENV

    def other_error(self, name: str, reason: str, details: dict[str, Any],
                    lines: list[str]) -> ConnectError:
        if details.get("exit_status") == 127 and any(
                line.startswith(ENV + ":") and self.path in line for line in lines):
            # env, which starts su under LC_ALL=C, did not find su
            return program_not_found(name, self.path, lines[-1])
        return super().other_error(name, reason, details, lines)

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"prompt": PROMPT.encode(),
                                   "auth_failures": [t.encode() for t in self.auth_refused]}
        if self._password is not None:
            options["password"] = self._password.encode()
        return options
