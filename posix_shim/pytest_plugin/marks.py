"""What a test asks for: its @pytest.mark.enclave marks as policy flags and a backend, and the session's file.

Shared by every mode (sim, process outer and inner, the fixture), so a mark means the same wherever it runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pytest

from ..enclave import BACKENDS
from ..policy.loading import find_pyproject, load_toml
from ..policy.model import PolicyError

# Keyword arguments of @pytest.mark.enclave and the policy flag each one becomes.
MARK_LISTS = {f"{verb}_{kind}": f"--{verb}-{kind}" for verb in ("allow", "deny") for kind in
              ("read", "write", "net", "env")}
MARK_BOOLS = {"allow_ffi": "--allow-ffi", "allow_run": "--allow-run"}
MARK_KEYS = (*MARK_LISTS, *MARK_BOOLS, "backend")


def policy_file(config: pytest.Config) -> str | None:
    given = config.getoption("enclave_policy")
    if given:
        return os.path.abspath(given)
    found = find_pyproject(str(config.rootpath))
    try:
        if found and load_toml(found, ("tool", "posix_shim")) is not None:
            return found
    except PolicyError as exc:
        raise pytest.UsageError(f"posix_shim: {exc}") from None
    return None


def _as_list(key: str, value: Any) -> list[str]:
    if isinstance(value, str | os.PathLike):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str | os.PathLike) for v in value):
        raise pytest.UsageError(f"@pytest.mark.enclave({key}=...) takes a string or a list of strings, not "
                                f"{value!r}")
    return [os.fspath(v) for v in value]


def mark_settings(item: pytest.Item) -> tuple[tuple[str, ...], str | None]:
    """(policy flags, backend) of the item's @pytest.mark.enclave marks (class and module marks included; the
    closest `backend` wins).  Relative paths are taken from the rootdir, as [tool.posix_shim] paths are from
    the pyproject's folder."""
    flags: list[str] = []
    backend = None
    root = str(item.config.rootpath)
    for mark in reversed(list(item.iter_markers("enclave"))):  # farthest first, so the closest backend wins
        if mark.args:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.enclave takes keyword arguments only "
                                    f"({', '.join(MARK_KEYS)})")
        for key, value in mark.kwargs.items():
            if key == "backend":
                if value is not None and value not in BACKENDS:
                    raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.enclave(backend={value!r}): choose one "
                                            f"of {', '.join(BACKENDS)}")
                backend = value or backend
            elif key in MARK_BOOLS:
                if value:
                    flags.append(MARK_BOOLS[key])
            elif key in MARK_LISTS:
                for v in _as_list(key, value):
                    if key.endswith(("_read", "_write")):
                        v = os.path.join(root, os.path.expanduser(v))
                    flags.append(f"{MARK_LISTS[key]}={v}")
            else:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.enclave: unknown argument {key!r} (known: "
                                        f"{', '.join(MARK_KEYS)})")
    return tuple(sorted(set(flags))), backend


def grants_only(flags: Sequence[str]) -> list[str]:
    return [f for f in flags if f.startswith("--allow-")]


def skip_other_backend(items: list[pytest.Item], backend: str) -> None:
    for item in items:
        wanted = mark_settings(item)[1]
        if wanted and wanted != backend:
            item.add_marker(pytest.mark.skip(reason=f"@pytest.mark.enclave(backend={wanted!r}): runs with "
                                                    f"--enclave={wanted}"))

