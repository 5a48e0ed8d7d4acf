"""Turning a function into the reference a call sends: (module, qualified name).

Only functions a target can import by name travel; code never does. Lambdas,
nested functions, closures and methods bound to instances are refused here,
on the caller's side, with a TypeError that says what to do instead.
"""

from __future__ import annotations

import sys
from _functools import partial  # the functools module would cost every controller ~2 ms

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


_references: dict[Any, tuple[str, str]] = {}


class _Probe:
    def method(self) -> None:
        pass


# The types module's definitions, without importing it at every controller's start.
_MethodType = type(_Probe().method)
_BuiltinMethodType = type([].append)
_ModuleType = type(sys)


def function_reference(fn: Callable[..., Any]) -> tuple[str, str]:
    """Return (module, qualname) naming fn, or raise TypeError if it cannot be named."""
    try:
        return _references[fn]
    except KeyError:
        hashable = True
    except TypeError:  # unhashable: a method of an unhashable instance, refused below
        hashable = False
    # Outside the handlers: a TypeError raised here must not carry the KeyError, whose
    # text is fn's repr (a bound method's shows its instance: os.environ.get's, the
    # whole environment).
    reference = _reference(fn)
    if hashable:
        _references[fn] = reference
    return reference


def _reference(fn: Callable[..., Any]) -> tuple[str, str]:
    if isinstance(fn, partial):
        raise TypeError("functools.partial objects cannot be sent; pass the function "
                        "and its arguments to call() instead")
    owner = getattr(fn, "__self__", None)
    if isinstance(fn, _MethodType) or (isinstance(fn, _BuiltinMethodType) and owner is not None
                                       and not isinstance(owner, _ModuleType)):
        if not isinstance(owner, type):
            raise TypeError(f"{_name(fn)} is a method bound to an instance and cannot be sent; "
                            "call a module-level function or a classmethod instead")
        module, qualname = owner.__module__, f"{owner.__qualname__}.{fn.__name__}"
    else:
        if not callable(fn):
            raise TypeError(f"{_name(fn)} is not callable")
        module = getattr(fn, "__module__", None)
        if module is None and isinstance(getattr(fn, "__objclass__", None), type):
            module = fn.__objclass__.__module__  # a built-in type's method: str.upper
        qualname = getattr(fn, "__qualname__", None)
        if not module or not qualname:
            raise TypeError(f"{_name(fn)} has no module or qualified name, so a target cannot "
                            "import it")
        if "<lambda>" in qualname:
            raise TypeError(f"lambdas cannot be sent ({module}.{qualname}); "
                            "define a module-level function instead")
        if "<locals>" in qualname:
            raise TypeError(f"{module}.{qualname} is defined inside a function (a closure or "
                            "nested function) and cannot be sent; move it to module level")
    # == rather than is: a built-in type's classmethod (dict.fromkeys) is a new object
    # at each look-up, equal to the last.
    if _lookup(module, qualname) != _unwrap(fn):
        raise TypeError(f"{module}.{qualname} does not name the function given (is it "
                        "decorated without functools.wraps, or replaced at run time?)")
    if module == "__main__":
        module = _main_module_name(qualname)
    return _public_module(module, qualname, fn), qualname


def _public_module(module: str, qualname: str, fn: Callable[..., Any]) -> str:
    """The module users import fn from, where fn names the C module behind it
    (operator.add says _operator, pickle.dumps _pickle): 2.7 has no such module."""
    public = module.lstrip("_")
    if public != module and public in sys.modules and _lookup(public, qualname) == _unwrap(fn):
        return public
    return module


def _main_module_name(qualname: str) -> str:
    """The name under which a target imports our __main__: the target's own __main__
    is not ours. Run with -m, its module's own name (its relative imports then work, as
    for multiprocessing); a script, under MAIN_ALIAS; no source file, refused."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return spec.name
    from transport.modules import MAIN_ALIAS, main_script_source

    if main_script_source() is None:
        raise TypeError(f"__main__.{qualname} comes from a program with no source file "
                        "(python -c, standard input, a REPL or a notebook), which a target "
                        "cannot import; define it in a module")
    return MAIN_ALIAS


def _name(obj: Any) -> str:
    """What obj is, for an error message: never its repr, which for a bound method holds
    its instance's (os.environ.copy's is the whole environment)."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if owner is not None and not isinstance(owner, (type, _ModuleType)) and name:
        return f"{type(owner).__module__}.{name} (of a {type(owner).__qualname__} instance)"
    if name:
        return f"{getattr(obj, '__module__', None) or '?'}.{name}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


def _unwrap(fn: Any) -> Any:
    return getattr(fn, "__func__", fn)


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return _unwrap(obj)
