"""Which original each enclave function replaces, said next to the function; a family's PATCHES is derived.

    @interposed("pread", "pwrite")                 # replaces posix.<its own name>, using those rows
    def pwritev(fd, buffers, offset, flags=0): ...

    @interposed("getfl", "setfl", original="fcntl.fcntl", partial="commands other than F_GETFD/SETFD/GETFL/SETFL")
    def fcntl(fd, cmd, arg=0): ...

    PATCHES = patches_of(fdio, paths, ...)         # {posix.pwritev: pwritev, fcntl.fcntl: fcntl, ...}

The rows are `ocall_bridge.calls.uses` (checked against the table at import, and against the function's code by
tests/test_uses.py); the original is where the interposer swaps it in.  Adding a replacement is writing the
function: no second list to keep in step.  An original this Python does not have (os.unshare before 3.12) is
left out of PATCHES: nothing to replace.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from ocall_bridge.calls import uses

_F = TypeVar("_F", bound=Callable[..., Any])
_MISSING = object()


def interposed(*rows: str, partial: str = "", refused: str = "",
               original: str | tuple[str, ...] = "") -> Callable[[_F], _F]:
    """Register the decorated function (or class) as the replacement of `original` ("module.name", or several;
    by default "posix.<the function's name>") and declare the table rows it uses (`calls.uses`, with `partial`,
    or `refused` for a replacement that refuses every call)."""
    declare = uses(*rows, partial=partial, refused=refused)

    def register(fn: _F) -> _F:
        names = (original,) if isinstance(original, str) else original
        fn.__interposes__ = tuple(n or f"posix.{fn.__name__}" for n in names)  # type: ignore[attr-defined]
        return declare(fn)

    return register


def originals_of(fn: Any) -> tuple[str, ...]:
    """The "module.name"s `fn` replaces: () for a function that replaces nothing."""
    found = getattr(fn, "__interposes__", ())
    return found if isinstance(found, tuple) else ()


def patches_of(*modules: ModuleType) -> dict[Any, Any]:
    """{original object: replacement} for every registered replacement in `modules` (one a module imports from
    another is the same object, found twice), in the order the modules and their definitions come."""
    out: dict[Any, Any] = {}
    for module in modules:
        for value in vars(module).values():
            for target in originals_of(value):
                where, _, name = target.rpartition(".")
                original = getattr(importlib.import_module(where), name, _MISSING)
                if original is not _MISSING:
                    out[original] = value
    return out


__all__ = ["interposed", "originals_of", "patches_of"]
