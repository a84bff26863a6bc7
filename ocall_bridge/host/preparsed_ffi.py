"""cffi declarations loaded from their pre-parsed form, so the host's start-up never runs pycparser.

Parsing a cdef costs ~18 ms (pycparser), and the host needs two small ones at start (openat2 for confinement,
process_vm_writev for the supervisor).  cffi's out-of-line ABI mode (`ffi.set_source(name, None)` +
`emit_python_code`) turns a cdef into a few byte strings that `_cffi_backend.FFI` loads in ~1 ms; each module
keeps those strings next to its cdef, and a test regenerates them (`regenerate`) and fails if they ever differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load(name: str, preparsed: dict[str, Any], cdef: str) -> Any:
    """An FFI with `cdef`'s declarations: from `preparsed` when this cffi reads that form, else parsed (slower,
    the same declarations: another cffi version may encode them differently)."""
    try:
        import _cffi_backend

        return _cffi_backend.FFI(name, **preparsed)
    except Exception:
        import cffi

        ffi = cffi.FFI()
        ffi.cdef(cdef)
        return ffi


def regenerate(name: str, cdef: str, workdir: Path) -> dict[str, Any]:
    """What cffi's out-of-line ABI mode makes of `cdef` today (tests compare it with the stored form)."""
    import ast

    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source(name, None)
    out = workdir / f"{name}.py"
    ffi.emit_python_code(str(out))
    call = next(n for n in ast.walk(ast.parse(out.read_text())) if isinstance(n, ast.Call))
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}
