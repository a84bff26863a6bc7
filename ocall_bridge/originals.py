"""The one registry of the real functions, captured at import, before anything is interposed.

Interposition rewrites the attributes of `posix`, `time`, `_socket`, `select`, `fcntl`, `_signal`... and every
reference other modules captured from them.  Three parties need the real functions all the same:
* the host (`ocall_bridge/host/*`, the transports): on the sim backend it runs in the same process as the
  program, and must go on performing real calls while the enclave's interposition is installed;
* the enclave's families: a replacement falls through to the real function when no enclave is active
  (`time.sleep` between ecalls on sim), or computes with it (`time.gmtime` of the enclave's clock);
* the interposer: what uninstall puts back must be exactly what was there before (tests/test_originals.py
  checks that every attribute it rewrote is, after uninstall, the object this registry holds).

So they all take them from here, as gevent's `monkey.get_original(module, name)` gives the unpatched object
whatever has been patched since.  The snapshots below are plain dictionaries copied at import: the interposer
never rewrites them (it rewrites module namespaces, and skips `ocall_bridge` by name besides), so they keep
the originals even while everything else holds a replacement.  Importing this module after interposition is an
ordering bug that would make the host call the enclave: it raises ImportError instead of capturing
replacements.

`get(module, name)` is the general lookup; `os`, `socket`, `select`, `time`, `fcntl`, `signal`,
`posixsubprocess` and `multiprocessing` are the host's views: namespaces with the C module's functions under
their usual names (`originals.os.open` is `posix.open`), plus the few pure-Python helpers the host uses by name.
"""

from __future__ import annotations

import _datetime
import _imp
import _io
import _multiprocessing
import _posixsubprocess
import _signal
import _socket
import fcntl as _fcntl
import mmap as _mmap
import os as _pyos
import posix as _posix
import resource as _resource
import select as _select
import selectors as _selectors
import signal as _pysignal
import socket as _pysocket
import time as _time
from collections.abc import Mapping
from types import MappingProxyType, ModuleType, SimpleNamespace
from typing import Any

# The modules whose namespaces are captured, by the name `sys.modules` knows them under.  Every module a family
# replaces functions of is here (closed.MODULES that are loaded at start-up, time, and the pure-Python modules
# whose own functions are replaced: os's exec*/spawn*/popen, selectors' classes).
# Named explicitly: a C module may call itself something else (`_io.__name__` is "io").
_CAPTURED: dict[str, ModuleType] = {
    "posix": _posix, "_io": _io, "_socket": _socket, "select": _select, "fcntl": _fcntl,
    "_posixsubprocess": _posixsubprocess, "mmap": _mmap, "resource": _resource, "_signal": _signal, "time": _time,
    "_imp": _imp, "_multiprocessing": _multiprocessing, "os": _pyos, "socket": _pysocket, "signal": _pysignal,
    "selectors": _selectors}

# Entries of C types' own dictionaries that a family replaces in place (enclave_libc/time.py: datetime's "now"
# reads the clock in C, and the type's attributes cannot be assigned): "module.Type" -> name -> entry.
_TYPE_ENTRIES = {"_datetime.datetime": ("now", "utcnow")}


_SNAPSHOT: dict[str, MappingProxyType[str, Any]] = {
    name: MappingProxyType(dict(vars(module))) for name, module in _CAPTURED.items()}
_SNAPSHOT["_datetime.datetime"] = MappingProxyType(
    {name: _datetime.datetime.__dict__[name] for name in _TYPE_ENTRIES["_datetime.datetime"]})

# id(original) -> (module, name) for every callable captured: which original an object is.  Several modules hold
# the same function (`os.open` is `posix.open`): the first module of _CAPTURED, the one defining it, names it.
_WHERE: dict[int, tuple[str, str]] = {}
for _module_name, _namespace in _SNAPSHOT.items():
    for _name, _value in _namespace.items():
        if callable(_value):
            _WHERE.setdefault(id(_value), (_module_name, _name))


def _interposed(value: Any) -> bool:
    """Whether `value` is an interposer's replacement (it marks every one it installs)."""
    try:
        return getattr(value, "__posix_shim__", False) is True
    except Exception:  # an object whose attribute lookup fails is not one of ours
        return False


def replaced() -> list[str]:
    """module.name of every captured entry that is already a replacement (empty for a registry captured in time)."""
    out = []
    for module_name, namespace in _SNAPSHOT.items():
        for name, value in namespace.items():
            # A C type's entry is a C descriptor; enclave_libc/time.py puts a Python classmethod in its place.
            if isinstance(value, classmethod) if module_name in _TYPE_ENTRIES else (
                    callable(value) and _interposed(value)):
                out.append(f"{module_name}.{name}")
    return out


def _check_captured() -> None:
    """Refuse to stand as the registry if what was captured already holds replacements (see the docstring)."""
    late = replaced()
    if late:
        raise ImportError(f"ocall_bridge.originals imported after interposition ({', '.join(late[:3])}"
                          f"{', ...' if len(late) > 3 else ''} already replaced): the host would call the enclave")


_check_captured()


_MISSING = object()


def get(module: str, name: str, default: Any = _MISSING) -> Any:
    """The original `module.name` as it was before any interposition (`get("posix", "open")`).

    A name the module did not have raises AttributeError (or returns `default`), as the attribute lookup would;
    a module that is not registered raises KeyError: its originals were never captured, so none can be vouched
    for."""
    try:
        namespace = _SNAPSHOT[module]
    except KeyError:
        raise KeyError(f"{module!r} is not a module ocall_bridge.originals captured") from None
    value = namespace.get(name, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise AttributeError(f"module {module!r} had no attribute {name!r} before interposition")
        return default
    return value


def patches(module: str, replacements: Mapping[str, Any]) -> dict[Any, Any]:
    """A family's PATCHES entries for `module`: {the original of each name here: its replacement}.

    Keyed by the registry's own objects, so the references the interposer finds, rewrites and puts back are
    exactly the originals the host and the families call."""
    return {get(module, name): replacement for name, replacement in replacements.items()}


def where(value: Any) -> tuple[str, str] | None:
    """(module, name) of the original `value` is, or None if it is none of the registry's callables."""
    entry = _WHERE.get(id(value))
    if entry is None:
        return None
    return entry if get(*entry) is value else None


def modules() -> tuple[str, ...]:
    """The names `get` knows: the captured modules, and the "module.Type" entries of C types."""
    return tuple(_SNAPSHOT)


def namespace_of(module: str) -> MappingProxyType[str, Any]:
    """The whole captured namespace of `module` (read-only)."""
    try:
        return _SNAPSHOT[module]
    except KeyError:
        raise KeyError(f"{module!r} is not a module ocall_bridge.originals captured") from None


# -- the host's views --------------------------------------------------------------------------------------
# Copies, not the modules: a view cannot be rewritten by rewriting a module's namespace.

os = SimpleNamespace(**_SNAPSHOT["posix"])
os.fsencode = _SNAPSHOT["os"]["fsencode"]  # pure functions of os.py, used by name: captured all the same
os.fsdecode = _SNAPSHOT["os"]["fsdecode"]
socket = SimpleNamespace(**_SNAPSHOT["_socket"])
socket.socket_class = _SNAPSHOT["socket"]["socket"]  # the Python class, for accept()/detach() conveniences
socket.fromfd = _SNAPSHOT["socket"]["fromfd"]
select = SimpleNamespace(**_SNAPSHOT["select"])
time = SimpleNamespace(**_SNAPSHOT["time"])
fcntl = SimpleNamespace(**_SNAPSHOT["fcntl"])
signal = SimpleNamespace(**_SNAPSHOT["signal"])  # the Python module's (its enum-returning wrappers included)
posixsubprocess = SimpleNamespace(**_SNAPSHOT["_posixsubprocess"])
multiprocessing = SimpleNamespace(**_SNAPSHOT["_multiprocessing"])

del _module_name, _namespace, _name, _value

__all__ = ["get", "patches", "where", "modules", "namespace_of", "replaced", "os", "socket", "select", "time",
           "fcntl", "signal", "posixsubprocess", "multiprocessing"]
