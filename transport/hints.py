"""The controller's explanations of a call's failure: RemoteError.hint.

A remote traceback says what went wrong on the target; some failures have a
cause only the controller can see, which these name, each in one sentence:
- a module the target could not import that the controller has only as
  compiled code, which is never sent (import_error_hint);
- a forwarded package whose Requires-Python the target's Python does not meet
  (requires_python_hint): the controller sends what it has, and a package for
  newer Pythons fails on an older one in ways that name no version (a `|`
  between types, a SyntaxError);
- a called function that the target's own copy of its module lacks: a target
  imports what it has first (own_copy_hint);
- a failure in the module-level code of a called function's module, which the
  target runs to find the function (module_code_hint): a script without an
  `if __name__ == "__main__":`, a fabfile's Fabric imports.
The remote traceback and message are the target's (untrusted) text: they only
select which of the controller's own files and names a hint is about. The work
is done only for a call that failed.
"""

from __future__ import annotations

import os
import sys

from transport.modules import MAIN_ALIAS, compiled_only

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

FRAME_PREFIX = 'File "'
MAX_FRAMES = 64  # the innermost frames of a traceback, where the failure is


def for_call(remote_type: str, message: str, remote_traceback: str, target_version: str,
             called: Iterable[str]) -> str:
    """The hint for a failed call into a target of Python target_version ("3.9.18"),
    into which the functions of modules `called` were called; "" when none applies.
    Never raises: the caller is the router's thread, completing the call."""
    try:
        return _for_call(remote_type, message, remote_traceback, target_version, called)
    except Exception:  # no hint rather than a call that never completes
        from transport import log

        log.error("transport", "cannot explain a failed call (a bug: please report it)",
                  exc_info=True)
        return ""


def _for_call(remote_type: str, message: str, remote_traceback: str, target_version: str,
              called: Iterable[str]) -> str:
    frames = _frames(remote_traceback)
    called = list(called)
    metadata = metadata_hint(remote_type, message)
    # Read by a called module's own package, the missing metadata is the cause; read by
    # a package that a called module's top level imports (a fabfile's fabric, whose
    # paramiko reads its version), that import is.
    own = metadata and _distribution(message) in {_distribution(n.partition(".")[0])
                                                  for n in called}
    return (import_error_hint(remote_type, message)
            or (metadata if own else "")
            or requires_python_hint(frames, target_version)
            or own_copy_hint(remote_type, message, frames, called)
            or module_code_hint(frames, called)
            or metadata)


def metadata_hint(remote_type: str, message: str) -> str:
    """Why importlib.metadata found no distribution: forwarded packages come without one."""
    if remote_type.rpartition(".")[2] != "PackageNotFoundError":  # (or importlib_metadata's)
        return ""
    return (f"packages the target imports from the controller come without their "
            f"distribution's metadata, which importlib.metadata reads (here "
            f"{_distribution(message)}'s): install the package on the target, or give your "
            f"own package its version as a constant")


def _distribution(text: str) -> str:
    """A distribution's name as PackageNotFoundError's message gives it ("No package
    metadata was found for X"), or a module's, normalized to compare them."""
    name = text.rpartition(" for ")[2] if " " in text else text
    return name.strip().strip("'\"").lower().replace("-", "_").replace(".", "_")


def import_error_hint(remote_type: str, message: str) -> str:
    """Why a module a target could not import was not sent to it, if the controller
    has it only as compiled code; else ""."""
    if remote_type not in ("ModuleNotFoundError", "ImportError"):
        return ""
    prefix = "No module named "
    if message.startswith(prefix):
        # Python 3 names the module in full; Python 2 only its last part, which may be
        # more than one module's: no hint then, rather than a wrong one.
        name = message[len(prefix):].strip("'")
    elif message.startswith("cannot import name '"):
        # `from package import module` (3.7+): "cannot import name 'module' from
        # 'package' (...)"; a name that is not a module is not in compiled_only.
        words = message.split("'")
        if len(words) < 4 or words[2] != " from ":
            return ""
        name = f"{words[3]}.{words[1]}"
    else:
        return ""
    what = compiled_only.get(name)
    if what is None:
        return ""
    return (f"{name} is {what} on the controller, which is never sent to targets: "
            f"install {name.partition('.')[0]} on the target")


def requires_python_hint(frames: list[tuple[str, str]], target_version: str) -> str:
    """Which package in the traceback's frames (the innermost) needs a newer Python
    than the target's, by its distribution's Requires-Python on the controller; else ""."""
    if not target_version[:1].isdigit():
        return ""
    # The innermost sys.path directory that holds a file ('' may hold site-packages).
    bases = sorted({os.path.abspath(entry or ".").rstrip(os.sep) for entry in sys.path},
                   key=len, reverse=True)
    for path, _ in reversed(frames[-MAX_FRAMES:]):
        found = _distribution_of(path, bases)
        if found is None:
            continue
        name, dist_version, requires = found
        if requires and not python_meets(target_version, requires):
            major_minor = ".".join(target_version.split(".")[:2])
            return (f"{name} {dist_version} on the controller requires Python {requires}, and "
                    f"this target runs {target_version}: install a {name} that supports "
                    f"Python {major_minor} on the target (a target imports its own "
                    f"packages first; only what it lacks is sent)")
    return ""


def own_copy_hint(remote_type: str, message: str, frames: list[tuple[str, str]],
                  called: Iterable[str]) -> str:
    """Why the target's module lacks a function the controller's has, if the call
    failed finding it there: the target imported a copy of its own. Python 3's words
    only (2.7's do not name the module)."""
    if (remote_type != "AttributeError" or not frames
            or frames[-1] != ("<transport.core.dispatch>", "resolve")):
        return ""
    words = message.split("'")  # module 'verpkg' has no attribute 'new'
    if len(words) != 5 or words[0] != "module " or words[2] != " has no attribute ":
        return ""
    module, attribute = words[1], words[3]
    if module not in called or not hasattr(sys.modules.get(module), attribute):
        return ""
    return (f"the target imported its own {module}, which has no {attribute}: a target "
            f"imports the modules it has first and is sent only those it lacks, so install "
            f"the controller's version of {module.partition('.')[0]} there (or remove its copy)")


def module_code_hint(frames: list[tuple[str, str]], called: Iterable[str]) -> str:
    """Why a call failed in the module-level code of the module that defines a
    function called there (a name in called), if its remote traceback passes through
    it; else "". A target imports that module to find the function, and so runs its
    top level: a script's own work outside `if __name__ == "__main__":` (where
    `transport` is the core, without a Router), or a fabfile's `from fabric import
    task`."""
    main = sys.modules.get("__main__")
    main_spec = getattr(main, "__spec__", None)
    main_names = {MAIN_ALIAS, getattr(main_spec, "name", None)}  # a script, or python -m's
    files = {}
    for name in called:
        module = main if name in main_names else sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            files[path] = (name, path)
    for path, function in frames:
        found = files.get(path) if function == "<module>" else None
        if found is None:
            continue
        name, path = found
        if name in main_names:
            return (f"the target ran the module-level code of this script, {path}, as it "
                    f"imported it to find a function of it: keep the script's own work "
                    f"under `if __name__ == \"__main__\":`")
        return (f"the target ran the module-level code of {name} ({path}), as it imported "
                f"it to find a function of it: keep imports that only the controller "
                f"has out of it (a fabfile's `from fabric import task`), or define the "
                f"function in a module of its own")
    return ""


def _frames(remote_traceback: str) -> list[tuple[str, str]]:
    """(file, function) of each frame line of a traceback, outermost first; the
    function is "" where the line names none (a SyntaxError's)."""
    frames = []
    for line in remote_traceback.splitlines():
        line = line.strip()
        end = line.find('", line ')
        if line.startswith(FRAME_PREFIX) and end > len(FRAME_PREFIX):
            _, found, function = line[end:].partition(", in ")
            frames.append((line[len(FRAME_PREFIX):end], function if found else ""))
    return frames


# A sys.path directory -> {top-level name: (project name, version, Requires-Python)},
# read once per directory: the target's text then costs dict look-ups only.
_indexes: dict[str, dict[str, tuple[str, str, str]]] = {}


def _distribution_of(path: str, bases: list[str]) -> tuple[str, str, str] | None:
    """(project name, version, Requires-Python) of the installed distribution that
    holds the controller's file path, if path is under one of the directories bases
    (the longest first) and a .dist-info there names its top-level package."""
    if not path.endswith(".py"):
        return None
    base = next((base for base in bases if path.startswith(base + os.sep)), None)
    if base is None:
        return None
    top = path[len(base) + 1:].split(os.sep)[0]
    index = _indexes.get(base)
    if index is None:
        index = _indexes[base] = _read_index(base)
    return index.get(top[:-3] if top.endswith(".py") else top)


def _read_index(base: str) -> dict[str, tuple[str, str, str]]:
    """What each .dist-info in directory base installed: its top-level names."""
    index: dict[str, tuple[str, str, str]] = {}
    try:
        names = sorted(name for name in os.listdir(base) if name.endswith(".dist-info"))
    except OSError:
        return index
    for name in names:
        directory = os.path.join(base, name)
        fields = _metadata(directory)
        if fields is None:
            continue
        found = (fields.get("name", name), fields.get("version", "?"),
                 fields.get("requires-python", ""))
        for top in _tops(directory):
            index.setdefault(top, found)
    return index


def _metadata(directory: str) -> dict[str, str] | None:
    """The header fields of a .dist-info's METADATA, names in lower case."""
    fields: dict[str, str] = {}
    try:
        with open(os.path.join(directory, "METADATA"), encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the headers end; the description follows
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
    except (OSError, UnicodeDecodeError):
        return None
    return fields


def _tops(directory: str) -> set[str]:
    """The top-level modules and packages a .dist-info's distribution installed."""
    try:
        with open(os.path.join(directory, "top_level.txt"), encoding="utf-8") as f:
            return set(f.read().split())
    except OSError:
        pass
    tops = set()
    try:
        with open(os.path.join(directory, "RECORD"), encoding="utf-8") as f:
            for line in f:
                first = line.split(",", 1)[0].split("/", 1)[0]
                if first.endswith(".py"):
                    tops.add(first[:-3])
                elif ("/" in line.split(",", 1)[0] and not first.startswith(".")
                      and not first.endswith((".dist-info", ".data"))):
                    tops.add(first)
    except (OSError, UnicodeDecodeError):
        pass
    return tops


def python_meets(python_version: str, requires: str) -> bool:
    """Whether a Python version ("3.9.18") meets a Requires-Python specifier
    (">=3.10", "!=3.0.*,>=2.7"): PEP 440's comparisons on release numbers; a clause
    not understood is taken as met (no hint rather than a wrong one)."""
    try:
        version = tuple(int(part) for part in python_version.split(".")[:3])
    except ValueError:
        return True
    for clause in requires.split(","):
        clause = clause.strip()
        for operator in ("~=", "==", "!=", "<=", ">=", "<", ">"):
            if clause.startswith(operator):
                break
        else:
            continue
        text = clause[len(operator):].strip()
        wildcard = text.endswith(".*")
        try:
            wanted = tuple(int(part) for part in (text[:-2] if wildcard else text).split("."))
        except ValueError:
            continue
        width = max(len(wanted), len(version))
        have = version + (0,) * (width - len(version))
        want = wanted + (0,) * (width - len(wanted))
        if operator in ("==", "!=") and wildcard:
            same = version[:len(wanted)] == wanted
            met = same if operator == "==" else not same
        elif operator == "~=":
            met = have >= want and version[:len(wanted) - 1] == wanted[:-1]
        else:
            met = {"==": have == want, "!=": have != want, "<=": have <= want,
                   ">=": have >= want, "<": have < want, ">": have > want}[operator]
        if not met:
            return False
    return True
