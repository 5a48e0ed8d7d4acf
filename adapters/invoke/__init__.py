"""invoke adapter: an invoke Runner whose commands run on a transport target.

Select it in a tasks.py, as invoke allows for any runner:

    ns.configure({"runners": {"local": TransportRunner},
                  "transport": {"host": "deploy@web1"}})

after which every ``c.run`` of that collection runs on web1 through one
persistent interpreter. ``transport.host`` "local" (the default) runs the
commands in a local child interpreter.
"""

from __future__ import annotations

from adapters.invoke.compat import check_invoke_version

check_invoke_version()

from adapters.invoke.runner import TransportRunner  # noqa: E402  (after the version check)
from adapters.targets import Targets, shared_targets  # noqa: E402

__all__ = ["TransportRunner", "Targets", "shared_targets"]
