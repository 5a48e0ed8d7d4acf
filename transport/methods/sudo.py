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

from transport.errors import ConnectError
from transport.methods.become import BecomeMethod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from transport.bootstrap import Bootstrap

PROMPT = "[transport:sudo:password]"


class SudoMethod(BecomeMethod):
    """Run `python` as `user` under sudo."""

    tool = "sudo"
    prompt = PROMPT
    auth_refused = ("is not in the sudoers file", "is not allowed to execute", "a password is required",
                    "incorrect password attempt", "Sorry, try again", "may not run sudo",
                    "Authentication failure", "account validation failure")

    def argv(self, bootstrap: Bootstrap) -> list[str]:
        mode = ["-S", "-p", PROMPT] if self._password is not None else ["-n"]
        return [self.path, *mode, "-H", "-u", self.user, "--", *bootstrap.python_argv(self.python)]

    def options(self) -> dict[str, Any]:
        # sudo's verdicts that end the attempt at once; the others show in the exit.
        options: dict[str, Any] = {"auth_failures": [t.encode() for t in self.auth_refused[:2]]}
        if self._password is not None:
            options["prompt"] = PROMPT.encode()
            options["password"] = self._password.encode()
        return options

    def other_error(self, name: str, reason: str, details: dict[str, Any],
                    lines: list[str]) -> ConnectError:
        if any("must have a tty" in line for line in lines):
            return ConnectError(name, "sudo requires a terminal here (requiretty): " + lines[-1])
        return super().other_error(name, reason, details, lines)
