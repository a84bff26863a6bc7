"""Policy files: the TOML schema, checked completely before any rule is added.

A policy file is a standalone TOML file (`--policy FILE`) or the `[tool.posix_shim]` table of the nearest
pyproject.toml.  Every error names the file, the key (with its index in a list) and the problem, with a
"did you mean" for a misspelt key or call, because a policy that silently ignores a key grants or denies
something other than what its author read.  See docs/policy.md for every key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .builder import Builder
from .model import CALL_NAMES, USER_FAMILIES, PolicyError

_SCHEMA: dict[str, Any] = {
    "allow-all": bool,
    "defaults": bool,
    "calls": {"families": list, "allow": list, "deny": list},
    "read": {"allow": (list, bool), "deny": list},
    "write": {"allow": (list, bool), "deny": list},
    "net": {"allow": (list, bool), "connect": list, "bind": list, "deny": list},
    "env": {"allow": (list, bool), "deny": list, "set": dict},
    "native": {"ffi": bool, "run": bool},
    "allow_run": list,
    "violation": str,
    "encrypted": {"paths": list, "bound_to": str},
}


def _unknown(key: str, known: Iterable[str], where: str) -> str:
    import difflib  # only for a mistake: not imported on every start

    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(sorted(known))})"
    return f"{where}: unknown key {key!r}{hint}"


def _typename(t: Any) -> str:
    names = {bool: "true or false", list: "a list", dict: "a table", str: "a string"}
    if isinstance(t, tuple):
        return " or ".join(names[x] for x in t)
    return names[t]


def _validate(table: dict[str, Any], schema: dict[str, Any], prefix: str, file: str) -> None:
    for key, value in table.items():
        where = f"{file}: {prefix}{key}"
        if key not in schema:
            raise PolicyError(_unknown(key, schema, f"{file}: {prefix.rstrip('.') or 'top level'}"))
        expected = schema[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise PolicyError(f"{where}: must be a table ([{prefix}{key}])")
            _validate(value, expected, f"{prefix}{key}.", file)
        elif not isinstance(value, expected):
            raise PolicyError(f"{where}: must be {_typename(expected)}, not {type(value).__name__} {value!r}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise PolicyError(f"{where}[{i}]: must be a string, not {type(item).__name__} {item!r}")
        elif isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(v, str):
                    raise PolicyError(f"{where}.{k}: must be a string, not {type(v).__name__} {v!r}")


def load_toml(path: str, section: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The policy table of a file (`section` is the path of keys to it, e.g. ('tool', 'posix_shim'))."""
    import tomllib  # only when a policy file is read: not on every start

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: TOML syntax error: {exc}") from None
    table: Any = doc
    for key in section:
        table = table.get(key)
        if table is None:
            return None
        if not isinstance(table, dict):
            raise PolicyError(f"{path}: {'.'.join(section)} must be a table")
    return table


def apply_table(b: Builder, table: dict[str, Any], file: str, prefix: str = "", *, kind: str | None = None,
                target: str | None = None, cwd: str | None = None) -> None:
    """Validate one policy table completely, then add its rules to `b` (defaults first unless turned off)."""
    _validate(table, _SCHEMA, prefix, file)
    base = os.path.dirname(os.path.abspath(file))
    b.source = file
    if table.get("defaults", True):
        b.add_defaults(kind, target, cwd)
    if table.get("allow-all"):
        b.allow_everything(f"{prefix}allow-all in {file}")
    if "violation" in table:
        if table["violation"] not in ("raise", "abort"):
            raise PolicyError(f"{file}: {prefix}violation: must be \"raise\" or \"abort\", not {table['violation']!r}")
        b.violation = table["violation"]

    def origin(key: str) -> str:
        return f"{prefix}{key} in {file}"

    def each(key: str, items: list[str], fn: Any) -> None:
        for i, item in enumerate(items):
            try:
                fn(item)
            except ValueError as exc:
                raise PolicyError(f"{file}: {prefix}{key}[{i}]: {exc}") from None

    calls = table.get("calls", {})
    if "families" in calls:
        for i, fam in enumerate(calls["families"]):
            if fam not in USER_FAMILIES:
                raise PolicyError(f"{file}: {prefix}calls.families[{i}]: unknown family {fam!r} (families: "
                                  f"{', '.join(USER_FAMILIES)})")
        b.families = set(calls["families"])
    for key in ("allow", "deny"):
        for i, name in enumerate(calls.get(key, [])):
            if name not in CALL_NAMES:
                import difflib  # only for a mistake

                close = difflib.get_close_matches(name, sorted(CALL_NAMES), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise PolicyError(f"{file}: {prefix}calls.{key}[{i}]: unknown call {name!r}{hint}")
            (b.call_allow if key == "allow" else b.call_deny).add(name)
    for kind_ in ("read", "write"):
        sect = table.get(kind_, {})
        allow = sect.get("allow", [])
        if allow is True:
            b.add_all(kind_, origin(f"{kind_}.allow"))
        elif allow is not False:
            each(f"{kind_}.allow", allow, lambda v, k=kind_: b.add_path(k, True, v, origin(f"{k}.allow"), base))
        each(f"{kind_}.deny", sect.get("deny", []),
             lambda v, k=kind_: b.add_path(k, False, v, origin(f"{k}.deny"), base))
    net = table.get("net", {})
    allow = net.get("allow", [])
    if allow is True:
        b.add_all("net", origin("net.allow"))
    elif allow is not False:
        each("net.allow", allow, lambda v: b.add_net("allow", v, origin("net.allow")))
    for key in ("connect", "bind", "deny"):
        each(f"net.{key}", net.get(key, []), lambda v, k=key: b.add_net(k, v, origin(f"net.{k}")))
    env = table.get("env", {})
    allow = env.get("allow", [])
    if allow is True:
        b.add_all("env", origin("env.allow"))
    elif allow is not False:
        each("env.allow", allow, lambda v: b.add_env(True, v, origin("env.allow")))
    each("env.deny", env.get("deny", []), lambda v: b.add_env(False, v, origin("env.deny")))
    for name, value in env.get("set", {}).items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise PolicyError(f"{file}: {prefix}env.set.{name}: not a valid variable name or value")
        b.env_set[name] = value
    for key, value in table.get("native", {}).items():
        b.native[key] = value
    each("allow_run", table.get("allow_run", []), b.add_program)
    enc = table.get("encrypted", {})
    each("encrypted.paths", enc.get("paths", []), lambda v: b.add_encrypted(v, origin("encrypted.paths"), base))
    if "bound_to" in enc:
        if enc["bound_to"] not in ("enclave", "signer"):
            raise PolicyError(f"{file}: {prefix}encrypted.bound_to: must be \"enclave\" or \"signer\", not "
                              f"{enc['bound_to']!r}")
        b.encrypted_bound = enc["bound_to"]


def find_pyproject(start: str | None = None) -> str | None:
    """The nearest pyproject.toml from `start` (the cwd) upward."""
    d = os.path.abspath(start or os.getcwd())
    while True:
        candidate = os.path.join(d, "pyproject.toml")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def load_file(path: str, *, kind: str | None = None, target: str | None = None, cwd: str | None = None) -> Builder:
    """A Builder holding what a policy file says (a standalone file, or a pyproject.toml's table)."""
    b = Builder()
    if os.path.basename(path) == "pyproject.toml":
        table = load_toml(path, ("tool", "posix_shim"))
        if table is None:
            b.add_defaults(kind, target, cwd)
            return b
        apply_table(b, table, path, "tool.posix_shim.", kind=kind, target=target, cwd=cwd)
    else:
        table = load_toml(path)
        apply_table(b, table or {}, path, kind=kind, target=target, cwd=cwd)
    return b
