"""What both backends share about an ecall: its errors, the plain-data rule for what crosses, the target name.

Apart from `enclave.py` so that the backends can use it without importing the module that chooses them.
"""

from __future__ import annotations

import importlib
from typing import Any


class EnclaveUnavailable(RuntimeError):
    """This machine cannot give the backend's promise (the kernel lacks seccomp, Landlock ...): nothing ran."""


class EnclaveStateError(RuntimeError):
    """The enclave is not in a state that allows this operation."""


class EnclaveCallError(RuntimeError):
    """An ecall raised inside the enclave: the exception's type name, message and traceback text."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text


PLAIN_SCALARS = (type(None), bool, int, float, str, bytes)


def check_plain(value: Any, where: str, depth: int = 0) -> None:
    """Refuse anything that is not plain data, so sim and process accept exactly the same values."""
    if depth > 64:
        raise TypeError(f"{where}: nested too deeply")
    if isinstance(value, PLAIN_SCALARS):
        return
    if isinstance(value, list | tuple):
        for item in value:
            check_plain(item, where, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: dict keys must be str, not {type(key).__name__}")
            check_plain(item, where, depth + 1)
        return
    raise TypeError(f"{where}: {type(value).__name__} is not plain data (None, bool, int, float, str, bytes, "
                    f"list, tuple, dict)")


def resolve_target(target: str) -> Any:
    """'package.module:function' -> the function (imported inside the enclave, through its file calls)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"call target must look like 'module:function', not {target!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is not callable")
    return obj
