"""Where the originals are: an index of the loaded modules' namespaces, scanned once and kept current.

Interposition replaces, by identity, every reference to an original that any module's globals (or a default
argument, or a class's staticmethod) holds.  Finding them means looking at every value of every loaded module:
~10,000 values, ~5 ms in Python.  The sim backend installs and removes interposition around every
`Enclave.call`, so doing that walk twice per call made a trivial ecall cost ~10 ms.

This index does the walk once per process and then only looks again where something changed:
* every namespace gets a *plan*: which keys hold an original (what to write in, what to put back) and which
  functions keep one as a default;
* a namespace is scanned again only when it changed since its plan was made.  CPython 3.11-3.13 bump a
  dictionary's version tag (`ma_version_tag`) on every insertion, deletion or rebinding, so comparing the tags
  of all namespaces (~60 us for 250 modules) says exactly which ones did; `sys.modules` itself has a tag too,
  so modules imported, removed or replaced since are noticed the same way;
* where no tag can be read (another interpreter, or a layout the self-test below does not recognise) every
  namespace counts as changed on every install: the full walk of before, slow but just as complete.

What a tag cannot see, neither could the walk: a function whose `__defaults__` or a class whose staticmethod is
rebound later, without its module's namespace changing, keeps the plan it had (the walk's cache had the same
limit).  The audit hook (`tripwires`) stays behind all of it.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

# Never rewritten: the trusted runtime, the boundary and the host, and this front end.  They take their real
# functions from ocall_bridge.originals, but a module of theirs may still hold an original in a global (a
# fall-through captured at import), which must stay the real function while interposition is installed.
SKIP_PREFIXES = ("ocall_bridge", "enclave_libc", "posix_shim")

# A default-argument site: (holder, attribute, the value there at scan time, the value to install).  The holder
# is a function (`__defaults__` / `__kwdefaults__`) or a class (a builtin kept as a staticmethod).
DefaultSite = tuple[Any, str, Any, Any]


class TagReader:
    """Reads dictionaries' version tags: one at a time, or many at once through a memory view spanning them."""

    def __init__(self, offset: int, one: Callable[[int], Any], view: Callable[[int, int], memoryview]) -> None:
        self.offset = offset
        self._at = one
        self._view = view

    def one(self, namespace: dict) -> int:
        return self._at(id(namespace) + self.offset).value

    def many(self, namespaces: list[dict]) -> Callable[[], tuple[int, ...]]:
        """A reader of all these tags at once (~25 ns each: one C call, no Python per dict).  The caller keeps
        every namespace alive as long as it uses the reader, so every address read stays a live dict's header.
        The memory view over their span exists only during a read (made through ctypes, whose calls the sealed
        audit hook refuses): no view of the process's memory is left for a program inside to pick up."""
        if not namespaces:
            return tuple
        addresses = [id(ns) + self.offset for ns in namespaces]
        low = min(addresses)
        size = max(addresses) + 8 - low
        pick = itemgetter(*[(a - low) // 8 for a in addresses])
        make_view = self._view
        single = len(addresses) == 1

        def read() -> tuple[int, ...]:
            view = make_view(low, size)
            try:
                values = pick(view)
            finally:
                view.release()
            return (values,) if single else values

        return read


def _tag_reader() -> TagReader | None:
    """A reader of dicts' version tags, or None where it cannot be trusted (checked on live dicts first)."""
    if sys.implementation.name != "cpython" or not (3, 11) <= sys.version_info[:2] <= (3, 13):
        return None
    try:
        import ctypes
    except ImportError:
        return None
    if ctypes.sizeof(ctypes.c_ssize_t) != 8:
        return None
    api = ctypes.pythonapi
    args = (ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int)

    def view(address: int, size: int) -> memoryview:
        # Looked up for each read and dropped after (`pythonapi[...]` does not cache it): a function pointer kept
        # here would let a program inside call it without the lookup the sealed audit hook refuses.
        from_memory = api["PyMemoryView_FromMemory"]
        from_memory.restype, from_memory.argtypes = ctypes.py_object, args
        raw = from_memory(address, size, 0x100)  # 0x100: PyBUF_READ
        try:
            return raw.cast("Q")
        finally:
            raw.release()  # the cast keeps what it needs; nothing else holds the raw view

    # PyDictObject: PyObject_HEAD (refcount, type), Py_ssize_t ma_used, uint64_t ma_version_tag.
    reader = TagReader(24, ctypes.c_uint64.from_address, view)
    probe: dict[str, Any] = {"a": object()}
    other: dict[str, Any] = {}
    both = reader.many([probe, other])
    first = reader.one(probe)
    same = reader.one(probe)
    probe["a"] = object()  # a rebinding: the size does not change, the tag must
    rebound = reader.one(probe)
    probe["b"] = 1
    grown = reader.one(probe)
    del probe["b"]
    shrunk = reader.one(probe)
    if not (first == same and len({first, rebound, grown, shrunk}) == 4 and both()[0] == shrunk
            and both()[1] == reader.one(other) and id(probe) % 8 == 0 and id(other) % 8 == 0):
        return None
    return reader


class Plan:
    """What interposition does to one namespace, valid while the namespace does not change."""

    __slots__ = ("namespace", "name", "patch", "restore", "undo", "defaults")

    def __init__(self, namespace: dict, name: str, patch: dict[str, Any], restore: dict[str, Any],
                 undo: list[tuple[dict, str, Any]], defaults: list[DefaultSite]) -> None:
        self.namespace = namespace
        self.name = name
        self.patch = patch  # key -> replacement, for every key that holds an original
        self.restore = restore  # key -> that original
        self.undo = undo  # (namespace, key, original) for the interposer's record (named swaps left out)
        self.defaults = defaults


_FUNCTION, _STATIC, _CLASS = types.FunctionType, staticmethod, classmethod
_is_function = types.FunctionType.__instancecheck__  # filters in C
_is_class = type.__instancecheck__.__get__(type)


def scan_default_holders(namespace: dict, ids: Mapping[int, Any]) -> list[Any]:
    """The functions of a module namespace with a default argument whose id is a key of `ids` (an original, or a
    replacement when restoring): its functions and the methods of the classes it defines (one level: where
    `tempfile`, `shutil` and `os` keep them); and (class, name, staticmethod) for a class that keeps one of them
    as a staticmethod (3.13's glob: `scandir = staticmethod(os.scandir)`).  The defaults are matched against
    `ids` in C (`isdisjoint`), so the one full scan at start-up stays cheap."""
    module_name = namespace.get("__name__")
    keys = ids.keys()
    holders: list[Any] = []
    values = list(namespace.values())
    for value in filter(_is_function, values):
        if (value.__defaults__ and not keys.isdisjoint(map(id, value.__defaults__))) or (
                value.__kwdefaults__ and not keys.isdisjoint(map(id, value.__kwdefaults__.values()))):
            holders.append(value)
    for value in filter(_is_class, values):
        if value.__module__ == module_name:
            for name, member in list(vars(value).items()):
                kind = type(member)
                if kind is _STATIC or kind is _CLASS:
                    func = member.__func__
                    if kind is _STATIC and id(func) in keys:
                        holders.append((value, name, member))
                        continue
                    member = func
                elif kind is not _FUNCTION:
                    continue
                if type(member) is _FUNCTION and (
                        (member.__defaults__ and not keys.isdisjoint(map(id, member.__defaults__))) or (
                            member.__kwdefaults__ and not keys.isdisjoint(map(id, member.__kwdefaults__.values())))):
                    holders.append(member)
    return holders


def _swapped(reps: Mapping[int, tuple[Any, Any]], value: Any) -> Any:
    entry = reps.get(id(value))
    return entry[1] if entry is not None and entry[0] is value else value


def default_sites(namespace: dict, reps: Mapping[int, tuple[Any, Any]]) -> list[DefaultSite]:
    """Every default argument or class staticmethod of `namespace` that holds a key of `reps` (id -> (from, to))."""
    sites: list[DefaultSite] = []
    for fn in scan_default_holders(namespace, reps):
        if isinstance(fn, tuple):
            cls, name, member = fn
            entry = reps.get(id(member.__func__))
            if entry is not None and entry[0] is member.__func__:
                after = entry[1] if isinstance(entry[1], staticmethod) else staticmethod(entry[1])
                sites.append((cls, name, member, after))
            continue
        defaults = fn.__defaults__
        if defaults:
            swapped = tuple(_swapped(reps, d) for d in defaults)
            if any(a is not b for a, b in zip(swapped, defaults, strict=True)):
                sites.append((fn, "__defaults__", defaults, swapped))
        kwdefaults = fn.__kwdefaults__
        if kwdefaults:
            changed = {k: _swapped(reps, v) for k, v in kwdefaults.items() if _swapped(reps, v) is not v}
            if changed:
                sites.append((fn, "__kwdefaults__", kwdefaults, {**kwdefaults, **changed}))
    return sites


def current(holder: Any, attr: str) -> Any:
    """What a default site holds now (a class's own dict entry, not what attribute lookup would bind)."""
    if isinstance(holder, type):
        return holder.__dict__.get(attr)
    return getattr(holder, attr)


class Index:
    """The plans of every namespace interposition may rewrite, for one set of replacements.

    `reps` is id(original) -> (original, replacement); `named` is key -> the same, for objects swapped only under
    one name (the environment mappings: `environ`/`environb`).  `snapshot` holds every plan's namespace's tag at
    the last moment the plans were known to match their namespaces (None: nothing is known)."""

    def __init__(self, reps: Mapping[int, tuple[Any, Any]], named: Mapping[str, Mapping[int, tuple[Any, Any]]],
                 reader: TagReader | None) -> None:
        self.reps = reps
        self.named = named
        self.reader = reader
        self.plans: list[Plan] = []
        self.active: list[Plan] = []  # the plans with something to write
        self.read: Callable[[], tuple[int, ...] | None] = lambda: None
        self.snapshot: tuple[int, ...] | None = None
        self.stale: list[int] = []  # positions of plans whose namespace the program wrote while inside
        self.position: dict[int, int] = {}  # id(namespace) -> its plan's position
        self.modules_tag: int | None = None
        self.by_name: dict[tuple[str, str], Any] = {}

    # -- scanning ---------------------------------------------------------------------------------------------
    def plan(self, namespace: dict, name: str) -> Plan:
        reps, named = self.reps, self.named
        patch: dict[str, Any] = {}
        restore: dict[str, Any] = {}
        undo: list[tuple[dict, str, Any]] = []
        items = list(namespace.items())
        # Most namespaces hold no original at all: one pass in C (ids against the table's) says so.
        if reps.keys().isdisjoint(map(id, namespace.values())) and not any(key in namespace for key in named):
            items = []
        for key, value in items:
            entry = reps.get(id(value))
            if entry is not None and entry[0] is value:
                patch[key] = entry[1]
                restore[key] = value
                undo.append((namespace, key, value))
                continue
            by_key = named.get(key) if type(key) is str else None
            if by_key is not None:
                entry = by_key.get(id(value))
                if entry is not None and entry[0] is value:
                    patch[key] = entry[1]
                    restore[key] = value
        return Plan(namespace, name, patch, restore, undo, default_sites(namespace, reps))

    def namespaces(self) -> list[tuple[str, dict]]:
        seen: set[int] = set()
        out = []
        for name, module in list(sys.modules.items()):
            if module is None or name.split(".")[0] in SKIP_PREFIXES:
                continue
            namespace = getattr(module, "__dict__", None)
            if isinstance(namespace, dict) and id(namespace) not in seen:
                seen.add(id(namespace))
                out.append((name, namespace))
        return out

    def refresh(self) -> int:
        """Bring every plan up to date (see the module docstring); returns how many were made again."""
        reader = self.reader
        snapshot = self.snapshot
        stale = set(self.stale)
        remade = 0
        relisted = False
        c_modules = False
        if reader is None or snapshot is None or reader.one(sys.modules) != self.modules_tag:
            old = {id(p.namespace): i for i, p in enumerate(self.plans)}
            plans = []
            for name, namespace in self.namespaces():
                i = old.get(id(namespace))
                if (i is None or reader is None or snapshot is None or i in stale or self.plans[i].namespace
                        is not namespace or snapshot[i] != reader.one(namespace)):
                    plans.append(self.plan(namespace, name))
                    remade += 1
                else:
                    plans.append(self.plans[i])
            self.plans = plans
            self.position = {id(p.namespace): i for i, p in enumerate(plans)}
            relisted = True
            if reader is not None:
                self.modules_tag = reader.one(sys.modules)
                self.read = reader.many([p.namespace for p in plans])
        else:
            plans = self.plans
            now = self.read()  # a tuple: read() answers None only without a reader, handled above
            if now is not None and now != snapshot:
                stale.update(i for i, (a, b) in enumerate(zip(now, snapshot, strict=True)) if a != b)
            active = False
            for i in stale:
                old_plan = plans[i]
                plans[i] = self.plan(old_plan.namespace, old_plan.name)
                remade += 1
                active = active or bool(old_plan.patch or old_plan.defaults or plans[i].patch or plans[i].defaults)
                c_modules = c_modules or old_plan.name in _c_modules()
            if active:
                self.active = [p for p in plans if p.patch or p.defaults]
        self.stale = []
        if relisted or c_modules or not self.by_name:
            self._by_name()
            self.active = [p for p in self.plans if p.patch or p.defaults]
        self.snapshot = self.read()
        return remade

    def _by_name(self) -> None:
        """(C module, attribute) -> replacement, read off the plans of the C modules (their originals)."""
        by_name: dict[tuple[str, str], Any] = {}
        for plan in self.plans:
            if plan.name in _c_modules():
                for key in plan.undo:
                    by_name[(plan.name, key[1])] = plan.patch[key[1]]
        self.by_name = by_name

    def changed(self, since: tuple[int, ...] | None) -> list[int]:
        """Positions of the plans whose namespace changed since `since` (a `read()`); all of them without tags."""
        now = self.read()
        if now is None or since is None:
            return list(range(len(self.plans)))
        if now == since:
            return []
        return [i for i, (a, b) in enumerate(zip(now, since, strict=True)) if a != b]

    def wrote(self, namespace: dict, before: int | None) -> None:
        """The caller just wrote `namespace`, which had tag `before`, with values that are neither originals nor
        replacements: if the plan was current then, it still is (no scan again for it)."""
        i = self.position.get(id(namespace))
        snapshot = self.snapshot
        if (i is None or before is None or snapshot is None or self.reader is None or i in self.stale
                or snapshot[i] != before or self.plans[i].namespace is not namespace):
            return
        updated = list(snapshot)
        updated[i] = self.reader.one(namespace)
        self.snapshot = tuple(updated)

    def modules_unchanged(self) -> bool:
        """No module was imported, removed or replaced since the last `refresh`."""
        return self.reader is not None and self.reader.one(sys.modules) == self.modules_tag


def _c_modules() -> tuple[str, ...]:
    from enclave_libc import closed

    return closed.MODULES


_reader: list[Any] = []  # [the tag reader or None], computed on first use (it imports ctypes)


def tag_reader() -> TagReader | None:
    """The process's tag reader (None: every install walks everything).  Built on first use: it imports ctypes,
    and any failure doing so (a confined process, a refused `ctypes.dlopen` event) just means no reader."""
    if not _reader:
        try:
            reader = _tag_reader()
        except Exception:
            reader = None
        _reader.append(reader)
    return _reader[0]


__all__ = ["Index", "Plan", "TagReader", "SKIP_PREFIXES", "current", "default_sites", "scan_default_holders",
           "tag_reader"]
