"""Interposition: swap Python's POSIX entry points for the enclave's, and put them back.

Each enclave_libc family lists its replacements as {original object: replacement}.  Installing finds every
reference to an original - the attribute of `posix`, of `os`, `builtins.open`, and the copies other modules
took at import (`from os import stat`, `_os = os` is fine, `shutil`'s globals) - by identity in the globals of
every loaded module, as pyfakefs and gevent do, and replaces it.  Every change is recorded, so `uninstall`
restores exactly what was there.

The originals are the registry's (`ocall_bridge.originals`): the families key their PATCHES by its objects, so
what uninstall puts back is exactly what the registry holds (tests/test_originals.py), and the host calls the
real OS through the registry's views, which no namespace rewrite reaches - so the sim backend's host goes on
calling the real OS while the program in the same process cannot.  The runtime's own modules are skipped by name
besides (interpose_index.SKIP_PREFIXES): a replacement module's globals may still name an original.
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

import importlib
import os
import threading
import types
from collections.abc import Iterable, Mapping
from typing import Any

from enclave_libc import closed, dirs
from ocall_bridge import originals

from .interpose_index import Index, Plan, current, scan_default_holders, tag_reader

# The enclave_libc modules whose PATCHES are installed, in order (later entries win on the same original).  Before
# them, always: `enclave_libc.closed`'s refusals, recomputed for each Interposer (see Interposer.__init__).
# encfs comes last: it wraps files' stat/open/rename/unlink for encrypted folders.
FAMILY_MODULES = ("files", "dirs", "io", "sockets", "poll", "time", "env", "random", "process", "children", "tls",
                 "encfs")


# Families may also swap objects no PATCHES dict can key (os.environ is a mutable mapping): `swap()` runs on
# install and returns the undo, run on uninstall.
FAMILY_SWAPS: list[Any] = []
# And objects swapped by identity under one key only (`NAMED_PATCHES`: key -> ((original, replacement), ...)): the
# environment mappings, which must not be swapped wherever else the same object is referenced.
FAMILY_NAMED: list[Mapping[str, Iterable[tuple[Any, Any]]]] = []


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
        if hasattr(module, "NAMED_PATCHES"):
            FAMILY_NAMED.append(module.NAMED_PATCHES)
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
_real_create_builtin = originals.get("_imp", "create_builtin")
_real_exec_builtin = originals.get("_imp", "exec_builtin")
_real_create_dynamic = originals.get("_imp", "create_dynamic", None)
_real_exec_dynamic = originals.get("_imp", "exec_dynamic", None)
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
    assert _real_create_dynamic is not None  # installed only where _imp has it (see IMP_PATCHES below)
    module = _real_create_dynamic(spec) if file is None else _real_create_dynamic(spec, file)
    _seal_fresh(module, getattr(spec, "name", None))
    return module


def _exec_dynamic(module: Any) -> int:
    assert _real_exec_dynamic is not None  # installed only where _imp has it
    result = _real_exec_dynamic(module)
    _seal_fresh(module)
    return result


IMP_PATCHES: dict[Any, Any] = {_real_create_builtin: _create_builtin, _real_exec_builtin: _exec_builtin}
if _real_create_dynamic is not None and _real_exec_dynamic is not None:
    IMP_PATCHES.update({_real_create_dynamic: _create_dynamic, _real_exec_dynamic: _exec_dynamic})


_capability_cache: dict[tuple, list[tuple[set, frozenset]]] = {}


class _Shared:
    """The replacements of the default tables and their index, kept while the tables hold the same objects
    (`closed.table()` is recomputed when a C module was loaded since; tracing wraps some replacements: then
    everything is rebuilt)."""

    key: tuple | None = None
    replacements: dict[int, tuple[Any, Any]] = {}
    originals: dict[int, tuple[Any, Any]] = {}  # id(replacement) -> (replacement, original)
    index: Index | None = None


def _tables_key(tables: tuple[Mapping[Any, Any], ...]) -> tuple:
    """What says the tables still hold the same objects.  Tracing swaps replacements inside the families' PATCHES
    in place (trace.install_inside_tracing), which a size would not show: each table's version tag does (a few
    reads), else what it holds, by identity."""
    reader = tag_reader()
    if reader is not None:
        try:
            return tuple((id(t), reader.one(t)) if type(t) is dict else (id(t), tuple(map(id, t)),
                                                                      tuple(map(id, t.values()))) for t in tables)
        except Exception:  # the sealed audit hook refuses the read: built from inside an enclave
            pass
    return tuple((id(t), tuple(map(id, t)), tuple(map(id, t.values()))) for t in tables)


def _replacements(patches: Iterable[Mapping[Any, Any]]) -> dict[int, tuple[Any, Any]]:
    replacements: dict[int, tuple[Any, Any]] = {}
    for table in patches:
        for original, replacement in table.items():
            replacements[id(original)] = (original, _as_builtin(original, replacement))
    for _, replacement in replacements.values():
        try:
            replacement.__posix_shim__ = True
        except (AttributeError, TypeError):
            pass
    return replacements


def _named() -> dict[str, dict[int, tuple[Any, Any]]]:
    """Key -> id(original) -> (original, replacement), for the objects families swap under one name only."""
    named: dict[str, dict[int, tuple[Any, Any]]] = {}
    for table in FAMILY_NAMED:
        for key, pairs in table.items():
            named.setdefault(key, {}).update({id(original): (original, rep) for original, rep in pairs})
    return named


def _restore_in(namespace: dict, originals: Mapping[int, tuple[Any, Any]]) -> None:
    """Give a namespace the originals back wherever it holds a replacement (`originals`: id(rep) -> (rep, orig)),
    in its globals, its functions' defaults and its classes' staticmethods."""
    for key, value in list(namespace.items()):
        entry = originals.get(id(value))
        if entry is not None and entry[0] is value:
            namespace[key] = entry[1]
    for fn in scan_default_holders(namespace, originals):
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


class Interposer:
    """One installation of a set of replacements; `install` and `uninstall` are each done once.

    The namespaces to rewrite come from an `Index` (posix_shim/interpose_index.py): scanned once per process
    and then only where something changed, so that the sim backend can install and remove interposition around
    every ecall for a fraction of a millisecond."""

    def __init__(self, patches: Iterable[Mapping[Any, Any]] | None = None) -> None:
        if patches is None:
            # The refusals are recomputed (a C module loaded since import gets its table too), then the families.
            tables = (closed.table(), *FAMILY_PATCHES, IMP_PATCHES)
            key = _tables_key(tables)
            if _Shared.key != key:
                _Shared.replacements = _replacements(tables)
                _Shared.originals = {id(rep): (rep, orig) for orig, rep in _Shared.replacements.values()}
                _Shared.index = None
                _Shared.key = key
            self.replacements = _Shared.replacements
            self.originals = _Shared.originals
            self._shared = True
        else:
            self.replacements = _replacements(patches)
            self.originals = {id(rep): (rep, orig) for orig, rep in self.replacements.values()}
            self._shared = False
        self.by_name: dict[tuple[str, str], Any] = {}
        self._undo: list[tuple[dict, str, Any]] = []
        self._defaults: list[tuple[Any, str, Any]] = []
        self._fresh: list[tuple[dict, str, Any, Any]] = []
        self._added: list[tuple[set, frozenset]] = []
        self._unswap: list[Any] = []
        self._index: Index | None = None
        self._plans: list[Plan] = []
        self._tags: tuple[int, ...] | None = None
        self.installed = False

    def _get_index(self) -> Index:
        """The shared index for the default tables; a private one (every namespace scanned, no tags) for other
        tables, or while another interposer is installed (it sees that one's replacements, and leaves them)."""
        if self._shared and _active is None:
            if _Shared.index is None:
                _Shared.index = Index(self.replacements, _named(), tag_reader())
            return _Shared.index
        return Index(self.replacements, _named(), None)

    def install(self) -> None:
        global _active
        with _lock:
            if self.installed:
                return
            index = self._index = self._get_index()
            index.refresh()
            self.by_name = index.by_name
            touched: list[Plan] = []
            undo = self._undo
            for plan in index.active:
                if plan.patch:
                    plan.namespace.update(plan.patch)
                    undo.extend(plan.undo)
                    touched.append(plan)
                if plan.defaults:
                    self._patch_defaults(plan)
            self._plans = touched
            self._tags = index.read()  # what only this installation wrote: the baseline for uninstall
            _active = self
            self._extend_capability_sets()
            self._unswap = [swap() for swap in FAMILY_SWAPS]
            self.installed = True

    def _patch_defaults(self, plan: Plan) -> None:
        """Swap originals captured as default arguments (`def close(self, unlink=_os.unlink)`), and builtins a
        class keeps as staticmethods (`scandir = staticmethod(os.scandir)`)."""
        for holder, attr, before, after in plan.defaults:
            if current(holder, attr) is before:
                setattr(holder, attr, after)
                self._defaults.append((holder, attr, before))

    def _extend_capability_sets(self) -> None:
        added = self._added
        for capability, members in self._capability_members():
            missing = members - capability
            if missing:
                capability |= missing
                added.append((capability, missing))

    def _capability_members(self) -> list[tuple[set, frozenset]]:
        """(os.supports_* set, the replacements that belong in it) - computed again when a set changed size (a
        program may add to them)."""
        names = ("supports_dir_fd", "supports_fd", "supports_follow_symlinks", "supports_effective_ids")
        sets = [getattr(os, name, None) for name in names]
        key = (id(self.replacements), *(len(c) if isinstance(c, set) else -1 for c in sets))
        cached = _capability_cache.get(key)
        if cached is not None:
            return cached
        members: dict[int, tuple[set, set]] = {}

        def add(capability: set, replacement: Any) -> None:
            members.setdefault(id(capability), (capability, set()))[1].add(replacement)

        # DirEntry, listdir and scandir travel together in os.supports_fd too.
        add(os.supports_fd, dirs.scandir)
        # A replacement answers `os.X in os.supports_*` as the original does: the replacements take the same
        # dir_fd / fd / follow_symlinks / effective_ids arguments (or refuse the call whatever they get).
        for capability in sets:
            if not isinstance(capability, set):
                continue
            for original in list(capability):
                entry = self.replacements.get(id(original))
                if entry is not None and entry[0] is original:
                    add(capability, entry[1])
        pairs = [(capability, frozenset(reps)) for capability, reps in members.values()]
        _capability_cache.clear()
        _capability_cache[key] = pairs
        return pairs

    def uninstall(self) -> None:
        global _active
        with _lock:
            if not self.installed:
                return
            index = self._index
            assert index is not None
            plans = index.plans
            positions = index.changed(self._tags)
            changed = [plans[i] for i in positions]
            changed_ids = {id(plan) for plan in changed}
            for plan in reversed(self._plans):
                namespace = plan.namespace
                if id(plan) not in changed_ids:
                    namespace.update(plan.restore)  # exactly as installed: nothing else wrote here since
                    continue
                patch = plan.patch
                for key, original in plan.restore.items():
                    if namespace.get(key) is patch[key]:
                        namespace[key] = original
            for namespace, key, original, replacement in reversed(self._fresh):
                if namespace.get(key) is replacement:
                    namespace[key] = original
            for holder, attr, original in reversed(self._defaults):
                setattr(holder, attr, original)
            if _active is self:
                _active = None
            self._restore_late_captures(index, changed)
            # Written by the program while inside: planned again at the next install; the rest are as planned.
            index.stale = positions
            index.snapshot = index.read()
            for capability, added in self._added:
                capability -= added
            for undo in reversed(self._unswap):
                undo()
            self._unswap.clear()
            self._undo.clear()
            self._fresh.clear()
            self._defaults.clear()
            self._added.clear()
            self._plans = []
            self.installed = False

    def _restore_late_captures(self, index: Index, changed: list[Plan]) -> None:
        """Modules imported while installed captured replacements (`from builtins import open` in bz2, tarfile,
        tokenize), and code inside may have stored one in a module that was already there: give them the
        originals too, or they would call into an enclave that is no longer there.  Only the namespaces that
        changed while inside, and the modules that are new since, can hold one."""
        originals = self.originals
        for plan in changed:
            _restore_in(plan.namespace, originals)
        if not index.modules_unchanged():
            known = {id(plan.namespace) for plan in index.plans}
            for _, namespace in index.namespaces():
                if id(namespace) not in known:
                    _restore_in(namespace, originals)

    def patched_names(self) -> list[str]:
        """module.attribute for every reference this installation rewrote (for the support table)."""
        names = []
        for namespace, key, _ in self._undo:
            names.append(f"{namespace.get('__name__', '?')}.{key}")
        return sorted(set(names))


def set_quietly(namespace: dict, values: Mapping[str, Any]) -> None:
    """Write `values` into a module namespace without making the next installation scan it again.

    The sim session swaps `sys.stdin`/`stdout`/`stderr` around every ecall: a plain write would change `sys`'s
    namespace and cost a scan of it per call.  Values that are originals or replacements take the plain path
    (the index must see those)."""
    with _lock:
        index = _Shared.index
        originals, replacements = _Shared.originals, _Shared.replacements
        ids = [*map(id, values.values()), *(id(namespace.get(k)) for k in values)]
        plain = index is None or index.reader is None or not (
            replacements.keys().isdisjoint(ids) and originals.keys().isdisjoint(ids))
        if plain:
            namespace.update(values)
            return
        assert index is not None and index.reader is not None
        before = index.reader.one(namespace)
        namespace.update(values)
        index.wrote(namespace, before)


def all_replacements() -> dict[Any, Any]:
    """original -> the object installed in its place, over every family (the support table reads it)."""
    out: dict[Any, Any] = {}
    for table in (closed.table(), *FAMILY_PATCHES, IMP_PATCHES):
        out.update({original: _as_builtin(original, replacement) for original, replacement in table.items()})
    return out


__all__ = ["Interposer", "FAMILY_PATCHES", "FAMILY_MODULES", "all_replacements", "set_quietly"]
