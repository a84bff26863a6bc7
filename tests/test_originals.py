"""The one registry of originals (ocall_bridge/originals.py): what the host calls, what the families fall through
to, and what uninstall puts back are the same objects, captured before anything was interposed.

Sim backend only: these tests look at the test process itself, where the enclave and the host share one process.
"""

from __future__ import annotations

import os
import posix
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enclave_libc import closed
from enclave_libc import time as enclave_time
from ocall_bridge import originals
from ocall_bridge.access import ALLOW_ALL
from posix_shim import Enclave
from posix_shim.interpose import FAMILY_PATCHES, IMP_PATCHES, Interposer

# Modules the registry does not capture (importing them has side effects, or they are rarely there): closed.py
# handles them by name when they are first imported, so no family keys an original of theirs; and the C
# `zoneinfo.ZoneInfo` class, which the time family swaps for the Python one only when the host had already
# loaded it (enclave_libc/time.py), and which the registry does not import to capture.
UNCAPTURED = frozenset({"termios", "readline", "_posixshmem", "zoneinfo"})


def _live(module: str) -> dict[str, Any]:
    if "." in module:  # "module.Type": a C type's own dictionary
        owner, _, type_name = module.partition(".")
        return dict(vars(getattr(sys.modules[owner], type_name)))
    return vars(sys.modules[module])


def _differences() -> list[str]:
    """module.name for every callable whose live value is not the registry's original (the datetime entries,
    replaced once at import by enclave_libc/time.py, are expected there and left out)."""
    out = []
    for module in originals.modules():
        if module == "_datetime.datetime":
            continue
        live = _live(module)
        for name, original in originals.namespace_of(module).items():
            if callable(original) and live.get(name) is not original:
                out.append(f"{module}.{name}")
    return out


@pytest.fixture
def host_module() -> Iterator[types.ModuleType]:
    """A module the program can name in Enclave.call, holding what the test puts in it."""
    module = types.ModuleType("posix_shim_test_originals")
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_get_answers_the_original_whatever_is_installed() -> None:
    assert originals.get("posix", "open") is posix.open
    assert originals.get("time", "sleep") is time.sleep
    assert originals.get("posix", "no_such_call", None) is None
    with pytest.raises(AttributeError, match="no_such_call"):
        originals.get("posix", "no_such_call")
    with pytest.raises(KeyError, match="termios"):
        originals.get("termios", "tcgetattr")
    interposer = Interposer()
    interposer.install()
    try:
        assert posix.open is not originals.get("posix", "open")  # installed: the module holds the replacement
        assert getattr(posix.open, "__posix_shim__", False)
        assert originals.get("posix", "open") is originals.os.open  # the registry and the host's view do not move
        assert not getattr(originals.get("posix", "open"), "__posix_shim__", False)
        assert originals.where(originals.get("posix", "stat")) == ("posix", "stat")
        assert originals.where(posix.stat) is None  # a replacement is no original
    finally:
        interposer.uninstall()


def test_every_original_a_family_replaces_is_the_registrys() -> None:
    """The families key their PATCHES by the registry's objects, so the interposer finds, rewrites and puts back
    exactly those: there is no second capture of a real function that could disagree."""
    unknown = []
    for table in (closed.table(), *FAMILY_PATCHES, IMP_PATCHES):
        for original in table:
            if originals.where(original) is None and getattr(original, "__module__", None) not in UNCAPTURED:
                unknown.append(repr(original))
    assert unknown == []
    # And the families' own fall-throughs are the registry's objects.
    from enclave_libc import poll, process, random

    assert enclave_time._real_sleep is originals.get("time", "sleep")
    assert enclave_time._real_now is originals.get("_datetime.datetime", "now")
    assert process._real_getpid is originals.get("posix", "getpid")
    assert process._real_fork_exec is originals.get("_posixsubprocess", "fork_exec")
    assert poll._real_set_wakeup_fd is originals.get("_signal", "set_wakeup_fd")
    assert random._urandom is originals.get("posix", "urandom")


def test_after_install_and_uninstall_every_patched_attribute_is_the_registrys_original(tmp_path: Path) -> None:
    assert _differences() == []
    interposer = Interposer()
    interposer.install()
    try:
        rewritten = [(ns.get("__name__"), key, before) for ns, key, before in interposer._undo]
        inside = _differences()
    finally:
        interposer.uninstall()
    # Installed, the captured modules held replacements (a few hundred names: posix alone has ~250)...
    assert len(inside) > 300 and "posix.open" in inside and "time.sleep" in inside
    # ... and what the interposer recorded taking away was, every time, the registry's original.
    assert rewritten
    for module, key, before in rewritten:
        known = originals.where(before) is not None or getattr(before, "__module__", None) in UNCAPTURED
        assert known, f"{module}.{key} held {before!r}, which is no original"
    # Uninstalled: every attribute is the registry's object again, by identity.
    assert _differences() == []
    # The same through a whole sim enclave run that writes a file (bytes on disk: the host's real calls worked).
    with Enclave(ALLOW_ALL, backend="sim") as enclave:
        assert enclave.run_code(f"open({str(tmp_path / 'out')!r}, 'w').write('inside')") == 0
    assert (tmp_path / "out").read_bytes() == b"inside"
    assert _differences() == []


def test_the_host_performs_real_calls_while_interposition_is_installed(tmp_path: Path,
                                                                        host_module: types.ModuleType) -> None:
    """On sim the host runs in the program's process: while the program's `open` is the enclave's, the host
    serves its ocalls with the registry's real functions (the file lands on disk), and the registry's getpid is
    the real process's while the program's is the enclave's virtual one."""
    import ocall_bridge.host.files as host_files

    target = tmp_path / "written-by-the-host"

    def check() -> dict[str, Any]:
        with open(target, "w") as f:  # the enclave's open: ocalls, served by host/files.py
            f.write("through the host")
        return {"program_open_patched": posix.open is not originals.get("posix", "open"),
                "host_open_is_registrys": host_files.os.open is originals.get("posix", "open"),
                "registry_pid": originals.os.getpid(), "program_pid": os.getpid()}

    host_module.check = check
    with Enclave(ALLOW_ALL, backend="sim") as enclave:
        seen = enclave.call(f"{host_module.__name__}:check")
    assert seen["program_open_patched"] and seen["host_open_is_registrys"]
    assert target.read_bytes() == b"through the host"
    assert seen["registry_pid"] == posix.getpid()  # the real process
    assert seen["program_pid"] != posix.getpid() and seen["program_pid"] > 1 << 22  # the enclave's virtual pid


def test_control_a_host_that_looks_its_functions_up_live_would_call_the_enclave(
        host_module: types.ModuleType) -> None:
    """Negative control for the test above: without the registry's snapshot (a host reading `posix.getpid` at
    call time), the same call inside gets the enclave's virtual pid instead of the real one."""
    host_module.check = lambda: posix.getpid()  # the live attribute, not the registry's
    with Enclave(ALLOW_ALL, backend="sim") as enclave:
        seen = enclave.call(f"{host_module.__name__}:check")
    assert seen != originals.os.getpid() and seen > 1 << 22


SOURCE = Path(originals.__file__).read_text()  # read now: with interposition installed, reading is the enclave's


def _fresh_registry(*, check: bool) -> types.ModuleType:
    """ocall_bridge/originals.py executed again as a new module; with check=False, the refusal to capture
    replacements is cut out of its source."""
    source = SOURCE
    if not check:
        assert "\n_check_captured()\n" in source
        source = source.replace("\n_check_captured()\n", "\n")
    module = types.ModuleType("posix_shim_test_registry_again")
    exec(compile(source, originals.__file__, "exec"), module.__dict__)  # our own source file
    return module


def test_a_registry_built_after_interposition_refuses_to_stand() -> None:
    assert originals.replaced() == []
    interposer = Interposer()
    interposer.install()
    try:
        with pytest.raises(ImportError, match=r"after interposition \(posix\..*the host would call the enclave"):
            _fresh_registry(check=True)
    finally:
        interposer.uninstall()


def test_control_without_the_check_a_late_registry_hands_the_host_the_enclaves_functions() -> None:
    """Negative control: the same late capture with the check cut out succeeds, and what it calls `os.open` is
    the enclave's replacement - the host would serve the program's ocalls by calling the program's enclave."""
    # Built now, outside interposition, it sees only what enclave_libc/time.py swapped for good at import.
    assert _fresh_registry(check=False).replaced() == ["_datetime.datetime.now", "_datetime.datetime.utcnow"]
    interposer = Interposer()
    interposer.install()
    try:
        late = _fresh_registry(check=False)
    finally:
        interposer.uninstall()
    assert "posix.open" in late.replaced() and "time.sleep" in late.replaced()
    assert late.os.open is not posix.open and getattr(late.os.open, "__posix_shim__", False)
