"""The command-line tool: `python -m transport` (installed as `transport`).

With no host it targets this machine through a local child interpreter:

    transport ping
    transport call platform:node
    transport --python /usr/bin/python3 call os:getloadavg
    transport --json call os.path:exists /etc/hosts

Arguments of `call` are parsed as JSON where they parse, else taken as strings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

import transport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _parse_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _resolve(spec: str) -> Any:
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise SystemExit(f"transport: expected module:function, got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"transport: cannot find {spec}: {e}") from None
    return obj


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transport", description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", help="target interpreter (default: this one)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--timeout", type=float, default=30.0, help="connect timeout, seconds")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ping", help="start the target and report its interpreter")
    call = commands.add_parser("call", help="run module:function [ARG ...] on the target")
    call.add_argument("function")
    call.add_argument("args", nargs="*")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        with transport.Router() as router:
            ctx = router.local(python=options.python, connect_timeout=options.timeout)
            if options.command == "ping":
                result: Any = {"python": ctx.python, "version": ctx.python_version, "pid": ctx.pid}
            else:
                fn = _resolve(options.function)
                result = ctx.call(fn, *[_parse_arg(a) for a in options.args])
    except transport.TransportError as e:
        if options.json:
            print(json.dumps({"host": "localhost", "ok": False, "error": str(e)}))
        else:
            print(f"transport: {e}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    if options.json:
        print(json.dumps({"host": "localhost", "ok": True, "result": _jsonable(result),
                          "seconds": round(elapsed, 4)}))
    elif options.command == "ping":
        print(f"localhost: ok, Python {result['version']} at {result['python']} "
              f"(pid {result['pid']}, {elapsed * 1000:.0f} ms)")
    else:
        print(result if isinstance(result, str) else json.dumps(_jsonable(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
