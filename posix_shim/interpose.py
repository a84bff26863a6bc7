"""Interposition: swap Python's POSIX entry points for the enclave's, and put them back.

Each enclave_libc family lists its replacements as {original object: replacement}.  Installing finds every
reference to an original - the attribute of `posix`, of `os`, `builtins.open`, and the copies other modules
took at import (`from os import stat`, `_os = os` is fine, `shutil`'s globals) - by identity in the globals of
every loaded module, as pyfakefs and gevent do, and replaces it.  Every change is recorded, so `uninstall`
restores exactly what was there.

The host's own modules are never rewritten (they are skipped by name and keep their captured references), so
the sim backend's host goes on calling the real OS while the program in the same process cannot.
Modules imported after installation see the patched attributes of `os` / `posix` / `io` and so use the enclave;
importlib itself goes through `posix.stat`, `posix.listdir` and `_io.open_code`, so imports do too.

Fail closed (issue 13), on both backends:
* `enclave_libc.closed` is installed first: every public callable of posix, _io, _socket, select, fcntl,
  resource, mmap, termios, _posixshmem, _posixsubprocess, readline, _signal that no family serves is refused
  (ENOSYS naming it) unless it only computes (closed.PURE).
* A freshly built module of those (`importlib.util.module_from_spec`, `del sys.modules['posix']; import posix`,
  `importlib.reload`, `_imp.create_builtin`, or a first import inside) is patched *by name* as it is created:
  `_imp.create_builtin`/`create_dynamic`/`exec_builtin`/`exec_dynamic` are themselves replaced, and multi-phase
  modules (whose functions are new objects each time, so no identity matches them) get the replacement of the
  same name, or a refusal.
* References captured in default arguments (`tempfile._TemporaryFileCloser.close(unlink=_os.unlink)`) are
  swapped in `__defaults__` / `__kwdefaults__` of the functions and methods of every loaded module.
Behind all three, the audit hook (`tripwires`) refuses the host-touching calls of whatever real function is
left, unless the runtime's host side makes them.
"""

from __future__ import annotations

import _imp
import importlib
import os
import sys
import threading
import types
from collections.abc import Iterable, Mapping
from typing import Any

from enclave_libc import closed, dirs, files

# Never rewritten: the trusted runtime, the boundary and the host, and this front end.
SKIP_PREFIXES = ("ocall_bridge", "enclave_libc", "posix_shim")

# The enclave_libc modules whose PATCHES are installed, in order (later entries win on the same original).  Before
# them, always: `enclave_libc.closed`'s refusals, recomputed for each Interposer (see Interposer.__init__).
# encfs comes last: it wraps files' stat/open/rename/unlink for encrypted folders.
FAMILY_MODULES = ("files", "dirs", "io", "sockets", "poll", "time", "env", "random", "process", "children", "tls",
                 "encfs")


# Families may also swap objects no PATCHES dict can key (os.environ is a mutable mapping): `swap()` runs on
# install and returns the undo, run on uninstall.
FAMILY_SWAPS: list[Any] = []


def _family_patches() -> tuple[Mapping[Any, Any], ...]:
    tables = []
    for name in FAMILY_MODULES:
        try:
            module = importlib.import_module(f"enclave_libc.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"enclave_libc.{name}":
                raise
            continue  # that family is not part of this build
        tables.append(module.PATCHES)
        if hasattr(module, "swap"):
            FAMILY_SWAPS.append(module.swap)
    return tuple(tables)


FAMILY_PATCHES: tuple[Mapping[Any, Any], ...] = _family_patches()

_lock = threading.Lock()


def _as_builtin(original: Any, replacement: Any) -> Any:
    """A builtin stored as a class attribute (`class K: open = io.open`) is called without `self`, because
    builtins are not descriptors; a Python function would bind.  Installing the replacement as a staticmethod
    (callable since 3.10, keeping __name__/__doc__/__wrapped__) makes it behave like the builtin it replaces."""
    if isinstance(original, types.BuiltinFunctionType) and isinstance(replacement, types.FunctionType):
        wrapped = _STATIC.get(replacement)
        if wrapped is None:
            wrapped = _STATIC[replacement] = staticmethod(replacement)
        return wrapped
    return replacement


_STATIC: dict[Any, staticmethod] = {}  # one wrapper per function, so identity checks agree everywhere


# -- fresh modules ----------------------------------------------------------------------------------------
_real_create_builtin, _real_exec_builtin = _imp.create_builtin, _imp.exec_builtin
_real_create_dynamic = getattr(_imp, "create_dynamic", None)
_real_exec_dynamic = getattr(_imp, "exec_dynamic", None)
_active: Interposer | None = None  # the installed interposer, for the undo of fresh modules


def _seal_fresh(module: Any, name: Any = None) -> None:
    """Give a module `_imp` just built the enclave's functions by name (see the module docstring).

    The name is the spec's (what the import system asked for): a C module may call itself something else
    (`_io` is named "io")."""
    if not isinstance(name, str):
        name = getattr(getattr(module, "__spec__", None), "name", None)
    if not isinstance(name, str):
        name = getattr(module, "__name__", None)
    if not isinstance(name, str):
        return
    base = name.rpartition(".")[2]
    if base not in closed.MODULES:
        return
    namespace = getattr(module, "__dict__", None)
    if not isinstance(namespace, dict):
        return
    interposer = _active
    by_name = interposer.by_name if interposer is not None else {}
    for key, value in list(namespace.items()):
        if not isinstance(key, str):
            continue
        replacement = by_name.get((base, key))
        if replacement is None:
            replacement = closed.for_fresh(base, key, value)
        if replacement is None or value is replacement:
            continue
        namespace[key] = replacement
        if interposer is not None:
            interposer._fresh.append((namespace, key, value, replacement))


def _create_builtin(spec: Any) -> Any:
    module = _real_create_builtin(spec)
    _seal_fresh(module, getattr(spec, "name", None))
    return module


def _exec_builtin(module: Any) -> int:
    result = _real_exec_builtin(module)
    _seal_fresh(module)
    return result


def _create_dynamic(spec: Any, file: Any = None) -> Any:
    module = _real_create_dynamic(spec) if file is None else _real_create_dynamic(spec, file)
    _seal_fresh(module, getattr(spec, "name", None))
    return module


def _exec_dynamic(module: Any) -> int:
    result = _real_exec_dynamic(module)
    _seal_fresh(module)
    return result


IMP_PATCHES: dict[Any, Any] = {_real_create_builtin: _create_builtin, _real_exec_builtin: _exec_builtin}
if _real_create_dynamic is not None and _real_exec_dynamic is not None:
    IMP_PATCHES.update({_real_create_dynamic: _create_dynamic, _real_exec_dynamic: _exec_dynamic})


def _scan_default_holders(namespace: dict) -> list[Any]:
    module_name = namespace.get("__name__")
    functions: list[Any] = []
    for value in list(namespace.values()):
        if isinstance(value, types.FunctionType):
            functions.append(value)
        elif isinstance(value, type) and value.__module__ == module_name:
            for name, member in list(vars(value).items()):
                if isinstance(member, staticmethod) and (isinstance(member.__func__, types.BuiltinFunctionType)
                                                         or getattr(member.__func__, "__posix_shim__", False)):
                    # A builtin kept as a class attribute (3.13's glob: `scandir = staticmethod(os.scandir)`).
                    functions.append((value, name, member))
                    continue
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if isinstance(member, types.FunctionType):
                    functions.append(member)
    return [fn for fn in functions if isinstance(fn, tuple)
            or any(callable(d) for d in fn.__defaults__ or ()) or any(callable(d) for d in
                                                                       (fn.__kwdefaults__ or {}).values())]


# id(namespace) -> (namespace, its size when scanned, the functions with a callable default).  Scanning every
# function of every module on each install would triple the cost of an Enclave.call on sim; a module's
# functions rarely change after import, and a namespace that grew or shrank is scanned again.
_holders_cache: dict[int, tuple[dict, int, list[Any]]] = {}


def _default_holders(namespace: dict) -> list[Any]:
    """The functions of a module namespace whose default arguments may hold a captured original: its functions
    and the methods of the classes it defines (one level: where `tempfile`, `shutil` and `os` keep them), those
    with at least one callable default."""
    cached = _holders_cache.get(id(namespace))
    if cached is not None and cached[0] is namespace and cached[1] == len(namespace):
        return cached[2]
    holders = _scan_default_holders(namespace)
    _holders_cache[id(namespace)] = (namespace, len(namespace), holders)
    return holders


class Interposer:
    """One installation of a set of replacements; `install` and `uninstall` are each done once."""

    def __init__(self, patches: Iterable[Mapping[Any, Any]] | None = None) -> None:
        if patches is None:
            # The refusals are recomputed (a C module loaded since import gets its table too), then the families.
            patches = (closed.table(), *FAMILY_PATCHES, IMP_PATCHES)
        self.replacements: dict[int, tuple[Any, Any]] = {}
        for table in patches:
            for original, replacement in table.items():
                self.replacements[id(original)] = (original, _as_builtin(original, replacement))
        self.by_name: dict[tuple[str, str], Any] = {}
        self._undo: list[tuple[dict, str, Any]] = []
        self._defaults: list[tuple[Any, str, Any]] = []
        self._fresh: list[tuple[dict, str, Any, Any]] = []
        self._added: list[tuple[set, Any]] = []
        self._unswap: list[Any] = []
        self.installed = False

    def _build_by_name(self) -> None:
        """(module, attribute) -> replacement, read off the loaded C modules before they are patched."""
        for module_name in closed.MODULES:
            module = sys.modules.get(module_name)
            if module is None:
                continue
            for key, value in list(vars(module).items()):
                entry = self.replacements.get(id(value))
                if entry is not None and entry[0] is value:
                    self.by_name[(module_name, key)] = entry[1]

    def install(self) -> None:
        global _active
        with _lock:
            if self.installed:
                return
            self._build_by_name()
            for name, module in list(sys.modules.items()):
                if module is None or name.split(".")[0] in SKIP_PREFIXES:
                    continue
                namespace = getattr(module, "__dict__", None)
                if isinstance(namespace, dict):
                    self._patch_namespace(namespace)
                    self._patch_defaults(namespace)
            _active = self
            self._extend_capability_sets()
            self._unswap = [swap() for swap in FAMILY_SWAPS]
            for _, replacement in self.replacements.values():
                try:
                    replacement.__posix_shim__ = True
                except (AttributeError, TypeError):
                    pass
            self.installed = True

    def _patch_namespace(self, namespace: dict) -> None:
        reps = self.replacements
        for key, value in list(namespace.items()):
            entry = reps.get(id(value))
            if entry is not None and entry[0] is value:
                namespace[key] = entry[1]
                self._undo.append((namespace, key, value))

    def _patch_defaults(self, namespace: dict) -> None:
        """Swap originals captured as default arguments (`def close(self, unlink=_os.unlink)`), and builtins a
        class keeps as staticmethods (`scandir = staticmethod(os.scandir)`)."""
        reps = self.replacements
        for fn in _default_holders(namespace):
            if isinstance(fn, tuple):
                cls, name, member = fn
                entry = reps.get(id(member.__func__))
                if entry is not None and entry[0] is member.__func__:
                    setattr(cls, name, staticmethod(entry[1]) if not isinstance(entry[1], staticmethod) else entry[1])
                    self._defaults.append((cls, name, member))
                continue
            defaults = fn.__defaults__
            if defaults:
                swapped = tuple(reps[id(d)][1] if id(d) in reps and reps[id(d)][0] is d else d for d in defaults)
                if any(a is not b for a, b in zip(swapped, defaults, strict=True)):
                    fn.__defaults__ = swapped
                    self._defaults.append((fn, "__defaults__", defaults))
            kwdefaults = fn.__kwdefaults__
            if kwdefaults:
                changed = {k: reps[id(v)][1] for k, v in kwdefaults.items() if id(v) in reps and reps[id(v)][0] is v}
                if changed:
                    fn.__kwdefaults__ = {**kwdefaults, **changed}
                    self._defaults.append((fn, "__kwdefaults__", kwdefaults))

    def _extend_capability_sets(self) -> None:
        for set_name, names in files.SUPPORTS.items():
            capability = getattr(os, set_name)
            for name in names:
                replacement = getattr(files, name)
                if replacement not in capability:
                    capability.add(replacement)
                    self._added.append((capability, replacement))
        # DirEntry, listdir and scandir travel together in os.supports_fd too.
        if dirs.scandir not in os.supports_fd:
            os.supports_fd.add(dirs.scandir)
            self._added.append((os.supports_fd, dirs.scandir))
        # And in general a replacement answers `os.X in os.supports_*` as the original does: the replacements take
        # the same dir_fd / fd / follow_symlinks / effective_ids arguments (or refuse the call whatever they get).
        for set_name in ("supports_dir_fd", "supports_fd", "supports_follow_symlinks", "supports_effective_ids"):
            capability = getattr(os, set_name, None)
            if not isinstance(capability, set):
                continue
            for original in list(capability):
                entry = self.replacements.get(id(original))
                if entry is not None and entry[0] is original and entry[1] not in capability:
                    capability.add(entry[1])
                    self._added.append((capability, entry[1]))

    def uninstall(self) -> None:
        global _active
        with _lock:
            if not self.installed:
                return
            for namespace, key, original in reversed(self._undo):
                if namespace.get(key) is self.replacements[id(original)][1]:
                    namespace[key] = original
            for namespace, key, original, replacement in reversed(self._fresh):
                if namespace.get(key) is replacement:
                    namespace[key] = original
            for fn, attr, original in reversed(self._defaults):
                setattr(fn, attr, original)
            if _active is self:
                _active = None
            self._restore_late_captures()
            for capability, replacement in self._added:
                capability.discard(replacement)
            for undo in reversed(self._unswap):
                undo()
            self._unswap.clear()
            self._undo.clear()
            self._fresh.clear()
            self._defaults.clear()
            self._added.clear()
            self.installed = False

    def _restore_late_captures(self) -> None:
        """Modules imported while installed captured replacements (`from builtins import open` in bz2, tarfile,
        tokenize): give them the originals too, or they would call into an enclave that is no longer there."""
        originals = {id(rep): (rep, orig) for orig, rep in self.replacements.values()}
        for name, module in list(sys.modules.items()):
            if module is None or name.split(".")[0] in SKIP_PREFIXES:
                continue
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for key, value in list(namespace.items()):
                entry = originals.get(id(value))
                if entry is not None and entry[0] is value:
                    namespace[key] = entry[1]
            for fn in _default_holders(namespace):
                if isinstance(fn, tuple):  # a class's staticmethod of a builtin, taken while installed
                    cls, attr, member = fn
                    func = getattr(member, "__func__", None)
                    entry = originals.get(id(func))
                    if entry is not None and entry[0] is func:
                        setattr(cls, attr, staticmethod(entry[1]))
                    continue
                defaults = fn.__defaults__
                if defaults and any(id(d) in originals and originals[id(d)][0] is d for d in defaults):
                    fn.__defaults__ = tuple(originals[id(d)][1] if id(d) in originals and originals[id(d)][0] is d
                                            else d for d in defaults)

    def patched_names(self) -> list[str]:
        """module.attribute for every reference this installation rewrote (for the support table)."""
        names = []
        for namespace, key, _ in self._undo:
            names.append(f"{namespace.get('__name__', '?')}.{key}")
        return sorted(set(names))


def all_replacements() -> dict[Any, Any]:
    """original -> the object installed in its place, over every family (the support table reads it)."""
    out: dict[Any, Any] = {}
    for table in (closed.table(), *FAMILY_PATCHES, IMP_PATCHES):
        out.update({original: _as_builtin(original, replacement) for original, replacement in table.items()})
    return out


__all__ = ["Interposer", "FAMILY_PATCHES", "FAMILY_MODULES", "all_replacements"]
