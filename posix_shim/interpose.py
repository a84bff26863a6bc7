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
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import types
from collections.abc import Iterable, Mapping
from typing import Any

from enclave_libc import dirs, files

# Never rewritten: the trusted runtime, the boundary and the host, and this front end.
SKIP_PREFIXES = ("ocall_bridge", "enclave_libc", "posix_shim")

# The enclave_libc modules whose PATCHES are installed, in order (later entries win on the same original:
# encfs wraps files' stat/open/rename/unlink for encrypted folders).
FAMILY_MODULES = ("files", "dirs", "io", "sockets", "poll", "time", "env", "random", "process", "tls", "encfs")


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


class Interposer:
    """One installation of a set of replacements; `install` and `uninstall` are each done once."""

    def __init__(self, patches: Iterable[Mapping[Any, Any]] = FAMILY_PATCHES) -> None:
        self.replacements: dict[int, tuple[Any, Any]] = {}
        for table in patches:
            for original, replacement in table.items():
                self.replacements[id(original)] = (original, _as_builtin(original, replacement))
        self._undo: list[tuple[dict, str, Any]] = []
        self._added: list[tuple[set, Any]] = []
        self._unswap: list[Any] = []
        self.installed = False

    def install(self) -> None:
        with _lock:
            if self.installed:
                return
            for name, module in list(sys.modules.items()):
                if module is None or name.split(".")[0] in SKIP_PREFIXES:
                    continue
                namespace = getattr(module, "__dict__", None)
                if isinstance(namespace, dict):
                    self._patch_namespace(namespace)
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
        with _lock:
            if not self.installed:
                return
            for namespace, key, original in reversed(self._undo):
                if namespace.get(key) is self.replacements[id(original)][1]:
                    namespace[key] = original
            self._restore_late_captures()
            for capability, replacement in self._added:
                capability.discard(replacement)
            for undo in reversed(self._unswap):
                undo()
            self._unswap.clear()
            self._undo.clear()
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

    def patched_names(self) -> list[str]:
        """module.attribute for every reference this installation rewrote (for the support table)."""
        names = []
        for namespace, key, _ in self._undo:
            names.append(f"{namespace.get('__name__', '?')}.{key}")
        return sorted(set(names))


def all_replacements() -> dict[Any, Any]:
    """original -> the object installed in its place, over every family (the support table reads it)."""
    out: dict[Any, Any] = {}
    for table in FAMILY_PATCHES:
        out.update({original: _as_builtin(original, replacement) for original, replacement in table.items()})
    return out


__all__ = ["Interposer", "FAMILY_PATCHES", "FAMILY_MODULES", "all_replacements"]
