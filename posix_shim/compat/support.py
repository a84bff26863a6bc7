"""The POSIX support table: every public function of the modules a program uses for I/O, and what the enclave
does with it.

Computed in-process from three facts, nothing guessed: the ocall table (`ocall_bridge.calls.CALLS`), the
interposition registry (`posix_shim.interpose.all_replacements()`), and what each replacement declares next to
its code - the table rows it uses (`@uses("open", "fstat")`, read back with `ocalls_of`), what it refuses among
arguments it otherwise serves (`uses(..., partial=...)`, `partial_of`), or that it is a refusal outright
(`replacement.__posix_shim_refused__ = True` or an errno name; or its `__name__` in its module's `REFUSED`
tuple).  A replacement that declares nothing is shown as such ("replaced, undeclared"), never inferred: the
declarations are checked against the code by the tests (tests/ocall_reach.py), not reconstructed here.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

from ocall_bridge.calls import CALLS, ocalls_of, partial_of

# The modules whose public functions the support table lists (os, io, socket, select, selectors, time and signal,
# plus fcntl, which the files family interposes).
SUPPORT_MODULES = ("os", "io", "socket", "select", "selectors", "time", "signal", "fcntl")

# kind -> its name in the table, in the order of the summary's columns.
KINDS = {
    "ocall": "ocall",
    "inside": "served inside",
    "refused": "refused (ENOSYS)",
    "python": "pure Python, inside",
    "undeclared": "replaced, undeclared",
    "none": "not interposed",
}

WIRE_CALLS = frozenset(c.name for c in CALLS if not c.inside)
INSIDE_CALLS = frozenset(c.name for c in CALLS if c.inside)

# Which defining modules count as "this module's own" when a module has no __all__ (selectors imports ABCMeta,
# namedtuple ... which are not its API).
_OWN_DEFINERS = {
    "os": {"os", "posix"}, "io": {"io", "_io"}, "socket": {"socket", "_socket"}, "select": {"select"},
    "selectors": {"selectors"}, "time": {"time"}, "signal": {"signal", "_signal"}, "fcntl": {"fcntl"},
}


@dataclasses.dataclass(frozen=True)
class Support:
    module: str
    name: str
    kind: str  # a key of KINDS
    calls: tuple[str, ...] = ()  # the ocalls (wire rows) it declares
    detail: str = ""
    inside: tuple[str, ...] = ()  # the rows served inside it declares


# ---------------------------------------------------------------------------------------------------------------
# One replacement
# ---------------------------------------------------------------------------------------------------------------


def declared_refused(fn: Any) -> str | None:
    """The errno name a replacement is marked to refuse with, or None: `__posix_shim_refused__` on it, or its
    name in its module's `REFUSED` tuple."""
    mark = getattr(fn, "__posix_shim_refused__", None)
    if mark:
        return mark if isinstance(mark, str) else "ENOSYS"
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    refused = getattr(module, "REFUSED", ()) if module is not None else ()
    if getattr(fn, "__name__", None) in refused:
        return "ENOSYS"
    return None


def _members(cls: type) -> Iterator[Any]:
    """The functions a class defines along its MRO: methods, static/class methods and property accessors."""
    for klass in cls.__mro__:
        if klass is object:
            continue
        for value in vars(klass).values():
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            if isinstance(value, property):
                yield from (f for f in (value.fget, value.fset, value.fdel) if f is not None)
            elif callable(value):
                yield value


def declared_rows(replacement: Any) -> tuple[frozenset[str], str] | None:
    """(the rows a replacement declared, what it declared it refuses), or None when it declared nothing.

    A function's own declaration (or that of the function it wraps); for a class, its own declaration, else the
    union of its methods' - a class is declared when any of its methods is.
    """
    for candidate in (replacement, inspect.unwrap(replacement) if callable(replacement) else replacement):
        rows = ocalls_of(candidate)
        if rows is not None:
            return rows, partial_of(candidate)
    if not isinstance(replacement, type):
        return None
    found: set[str] = set()
    partials: set[str] = set()
    declared = False
    for fn in _members(replacement):
        rows = ocalls_of(fn)
        if rows is None:
            continue
        declared = True
        found |= rows
        if partial_of(fn):
            partials.add(partial_of(fn))
    return (frozenset(found), "; ".join(sorted(partials))) if declared else None


def classify_replacement(replacement: Any) -> tuple[str, tuple[str, ...], str]:
    """(kind, ocalls, detail) for one interposed replacement, from its declarations alone."""
    kind, calls, detail, _inside = _classify(replacement)
    return kind, calls, detail


def _classify(replacement: Any) -> tuple[str, tuple[str, ...], str, tuple[str, ...]]:
    refused = declared_refused(replacement)
    if refused:
        return "refused", (), "" if refused == "ENOSYS" else refused, ()
    declared = declared_rows(replacement)
    if declared is None:
        return "undeclared", (), "declares no rows (`@uses`)", ()
    rows, partial = declared
    name = getattr(inspect.unwrap(replacement) if callable(replacement) else replacement, "__name__", "")
    # The row named like the function first, then the others alphabetically.
    calls = tuple(sorted(rows & WIRE_CALLS, key=lambda c: (c != name, c)))
    inside = tuple(sorted(rows & INSIDE_CALLS))
    refuses = f"refuses {partial}" if partial else ""
    if calls and name not in INSIDE_CALLS:
        return "ocall", calls, refuses, inside
    asks = f"asks {', '.join(calls)}" if calls else ""
    return "inside", calls, "; ".join(x for x in (asks, refuses) if x), inside


# ---------------------------------------------------------------------------------------------------------------
# Every public function of a module
# ---------------------------------------------------------------------------------------------------------------


def public_callables(module: types.ModuleType) -> list[tuple[str, Any]]:
    """The module's public functions and classes: its __all__ when it has one, else its own public names;
    exceptions, enums, struct sequences and ABCs are data, not entry points."""
    own = _OWN_DEFINERS.get(module.__name__, {module.__name__})
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_")
                 and str(getattr(getattr(module, n), "__module__", "")) in own]
    out = []
    for name in sorted(set(names)):
        obj = getattr(module, name, None)
        if obj is None or not callable(obj):
            continue
        if isinstance(obj, type):
            if issubclass(obj, BaseException | enum.Enum) or hasattr(obj, "n_fields") or inspect.isabstract(obj) \
                    or obj.__module__ in ("abc", "collections.abc", "typing"):
                continue
        elif not (inspect.isroutine(obj) or isinstance(obj, types.FunctionType)):
            continue
        out.append((name, obj))
    return out


_ACCELERATORS = {"os": "posix", "io": "_io", "socket": "_socket", "signal": "_signal", "select": "select",
                 "time": "time", "selectors": "select", "fcntl": "fcntl"}


def _names_used(code: types.CodeType) -> set[str]:
    """The global and attribute names a stdlib function's code (and its nested code) refers to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def _wrapped_builtin(modname: str, name: str, obj: Any) -> Any:
    """The C function a stdlib Python function of the same name wraps (signal.signal -> _signal.signal)."""
    if not isinstance(obj, types.FunctionType):
        return None
    accel = sys.modules.get(_ACCELERATORS.get(modname, "")) or None
    if accel is None or accel.__name__ == modname:
        return None
    inner = getattr(accel, name, None)
    if inner is None or inner is obj or not inspect.isroutine(inner) or isinstance(inner, types.FunctionType):
        return None
    # Only when the Python function really calls it: `_signal.NAME` appears in its code.
    names = _names_used(obj.__code__)
    return inner if name in names and accel.__name__ in names else None


def support_rows(modules: Sequence[str] = SUPPORT_MODULES) -> list[Support]:
    """Every public function of `modules`, classified against the interposition registry.

    Works whether or not an interposer is installed in this process: a replacement found in a module's
    namespace is looked up as such.
    """
    from ..interpose import all_replacements

    registry: dict[int, Any] = {}
    for original, installed in all_replacements().items():
        replacement = installed.__func__ if isinstance(installed, staticmethod) else installed
        registry[id(original)] = replacement
        registry[id(installed)] = replacement
        registry[id(replacement)] = replacement
    rows = []
    for modname in modules:
        module = importlib.import_module(modname)
        for name, obj in public_callables(module):
            replacement = registry.get(id(obj))
            wrapped = _wrapped_builtin(modname, name, obj)
            if replacement is None and wrapped is not None:
                # signal.signal, socket.getaddrinfo ...: a Python wrapper of the C function of the same name
                replacement = registry.get(id(wrapped))
                if replacement is None:
                    rows.append(Support(modname, name, "none", (), f"Python wrapper of {wrapped.__module__ or ''}."
                                                                   f"{name}"))
                    continue
            inside: tuple[str, ...] = ()
            if replacement is not None:
                kind, calls, detail, inside = _classify(replacement)
            elif isinstance(obj, types.FunctionType):
                kind, calls, detail = "python", (), ""
            elif isinstance(obj, type) and obj.__module__ == modname and all(
                    b.__module__ in (modname, "builtins", "abc") or b is object for b in obj.__mro__):
                kind, calls, detail = "python", (), "class"
            elif name.removesuffix("_ns") in INSIDE_CALLS:
                # The table says it is answered inside, and the native function already does that (a CPU clock
                # of the enclave's own threads): nothing to replace.
                kind, calls, detail = "inside", (), "the native function, by design (an inside row of the table)"
                inside = (name.removesuffix("_ns"),)
            else:
                kind, calls, detail = "none", (), ""
            rows.append(Support(modname, name, kind, calls, detail, inside))
    return rows
