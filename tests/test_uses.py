"""Every interposed replacement says which rows of the table it uses (`@uses` / `@interposed`), and says it truly.

The declaration is what compat's support table and a reader rely on; the bytecode reach analysis
(tests/ocall_reach.py) is the check: for each replacement in every enclave_libc family's PATCHES, the wire rows
it declares must be exactly the ocalls its code can make, and it declares `partial` (what it refuses) exactly
when its code can raise a refusal.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

import pytest
from ocall_reach import WIRE_CALLS, reach

import enclave_libc
from enclave_libc import runtime
from enclave_libc.errors import Unsupported
from enclave_libc.patches import interposed, originals_of, patches_of
from ocall_bridge.calls import ocalls_of, partial_of, uses
from ocall_bridge.errors import TableError

NOT_YET: set[str] = set()  # families still to declare (none: every family declares its rows)


def _families() -> list[ModuleType]:
    found = []
    for info in pkgutil.iter_modules(enclave_libc.__path__):
        module = importlib.import_module(f"enclave_libc.{info.name}")
        if isinstance(getattr(module, "PATCHES", None), dict):
            found.append(module)
    return found


FAMILIES = _families()


def problems(fn: Any) -> list[str]:
    """What is wrong with `fn`'s declaration, compared with what its code can reach ([] when it is true)."""
    name = getattr(fn, "__qualname__", repr(fn))
    declared = ocalls_of(fn)
    if declared is None:
        return [f"{name}: declares no rows (@uses / @interposed)"]
    found = reach(fn)
    out = []
    wire = set(declared) & WIRE_CALLS
    if wire != found.ocalls:
        out.append(f"{name}: declares {sorted(wire)}, its code reaches {sorted(found.ocalls)}")
    if bool(partial_of(fn)) != found.refuses:
        out.append(f"{name}: declares partial={partial_of(fn)!r}, but its code "
                   f"{'can' if found.refuses else 'cannot'} raise a refusal")
    return out


def _module_params() -> list[Any]:
    params = []
    for module in FAMILIES:
        short = module.__name__.rpartition(".")[2]
        marks = [pytest.mark.xfail(reason=f"{short}: its @uses declarations come with another branch (issue 19)",
                                   strict=False)] if short in NOT_YET else []
        params.append(pytest.param(module, id=short, marks=marks))
    return params


@pytest.mark.parametrize("module", _module_params())
def test_every_replacement_declares_the_rows_its_code_uses(module: ModuleType) -> None:
    # The runtime's own code only: the time family may swap in Python's own zoneinfo.ZoneInfo (when the C one
    # was loaded first), which is the standard library's code running on the other replacements.
    from zoneinfo import _zoneinfo  # type: ignore[attr-defined]

    ours = [fn for fn in dict.fromkeys(module.PATCHES.values()) if fn is not _zoneinfo.ZoneInfo]
    wrong = [p for fn in ours for p in problems(fn)]
    assert not wrong, "\n".join(wrong)


def test_the_families_checked_include_the_files_family_and_its_parts() -> None:
    names = {m.__name__ for m in FAMILIES}
    assert {"enclave_libc.files", "enclave_libc.dirs", "enclave_libc.io"} <= names
    from enclave_libc import files

    # The files family's PATCHES come from every module of its package, discovered, not listed.
    assert {m.__name__.rpartition(".")[2] for m in files.MODULES} >= {"fdio", "paths", "cwd", "terminal", "xattrs"}
    import os

    assert files.PATCHES[os.pread] is files.pread and files.PATCHES[os.getxattr].__module__.endswith("xattrs")


# -- negative controls: a wrong declaration is caught ------------------------------------------------------


@uses("write")
def _declares_write_but_reads(fd: int) -> bytes:
    return runtime.RT.fds.stubs.read(fd, 10)


@uses("read")
def _refuses_without_saying(fd: int) -> bytes:
    if fd > 100:
        raise Unsupported("read", "large fds")
    return runtime.RT.ocall.read(fd, 10)


def _declares_nothing(fd: int) -> None:
    runtime.RT.ocall.close(fd)


@uses("read", partial="large fds")
def _true_declaration(fd: int) -> bytes:
    if fd > 100:
        raise Unsupported("read", "large fds")
    return runtime.RT.fds.stubs.read(fd, 10)


def test_a_wrong_declaration_is_caught() -> None:
    assert problems(_declares_write_but_reads) == [
        "_declares_write_but_reads: declares ['write'], its code reaches ['read']"]
    assert problems(_refuses_without_saying) == [
        "_refuses_without_saying: declares partial='', but its code can raise a refusal"]
    assert problems(_declares_nothing) == ["_declares_nothing: declares no rows (@uses / @interposed)"]
    assert problems(_true_declaration) == []


def test_a_row_that_does_not_exist_cannot_be_declared() -> None:
    with pytest.raises(TableError, match="no row of the table has that name"):
        uses("getxattrs")


# -- interposition derived from the registration -------------------------------------------------------------


def test_patches_are_derived_from_the_registration_next_to_each_function() -> None:
    import posix

    module = ModuleType("enclave_libc._example")

    @interposed("fsync")
    def fsync(fd: int) -> None:
        """replaces posix.fsync (its own name)"""

    @interposed(original=("posix.lockf", "fcntl.lockf"), partial="all")
    def lockf(*args: Any) -> None:
        """replaces two originals"""

    @interposed(original="posix.no_such_call_in_this_python")
    def missing() -> None:
        """an original this Python lacks: nothing to replace"""

    def helper() -> None:
        """not registered: never a replacement"""

    module.fsync, module.lockf, module.missing, module.helper = fsync, lockf, missing, helper  # type: ignore[attr-defined]
    import fcntl

    assert patches_of(module) == {posix.fsync: fsync, posix.lockf: lockf, fcntl.lockf: lockf}
    assert originals_of(fsync) == ("posix.fsync",) and originals_of(helper) == ()


def test_declarations_survive_the_inside_tracer() -> None:
    """Tracing an enclave's inside calls (`--trace`, `Enclave(trace=...)`) swaps traced wrappers into PATCHES for
    the rest of the process: what they stand in for must still say what it declares, or compat and the check
    above read "declares nothing" after any traced run (found when the suite ran a traced TLS test first)."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, 'tests')\n"
            "from posix_shim.trace import install_inside_tracing; install_inside_tracing()\n"
            "import test_uses\n"
            "from enclave_libc import files, process\n"
            "wrapped = [fn for fn in files.PATCHES.values() if getattr(fn, '__posix_shim_traced__', False)]\n"
            "assert wrapped, 'the tracer wrapped no inside call'\n"
            "bad = [p for m in test_uses.FAMILIES for fn in m.PATCHES.values() for p in test_uses.problems(fn)]\n"
            "print(len(wrapped), bad)\n")
    from conftest import REPO

    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, _, bad = out.stdout.strip().partition(" ")
    assert int(count) > 5 and bad == "[]", out.stdout
