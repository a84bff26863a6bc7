"""The allowlist policy: which POSIX exists inside the enclave, and which host resources it may touch.

A policy comes from TOML (`--policy FILE`, or `[tool.posix_shim]` in the nearest pyproject.toml), from Deno-style
flags, and from the defaults that let an ordinary script run.  Denials always win over grants, whatever their
source.  See docs/policy.md for every key and flag.

One job per module:

* `model`    - the rules and the `Policy` that judges with them (`check`, `call_allowed`), its plain data
* `net`      - the address rules (`HOST:PORT`, CIDR blocks, port ranges) and which names need no resolver
* `defaults` - what an ordinary script is granted without asking
* `builder`  - accumulating rules from every source into a `Policy`
* `loading`  - policy files: the TOML schema, errors naming the file, key and problem
* `flags`    - the command-line flags and the policies the runner builds from them
* `learner`  - `--learn=FILE`: allow everything, record, write the smallest policy
* `check`    - `python -m posix_shim policy check` (imported only by that command)

This package re-exports the names its callers use, so `from posix_shim import policy; policy.parse(...)` is the
library API; inside posix_shim, code may import from the precise module instead.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Each name loads its module at first use (PEP 562): the enclave process needs only `model.from_data` (it imports
# it by its module), not the flags, files and learner of the runner - argparse and the builder's work.
_HOME = {
    "Builder": "builder", "build_default": "builder",
    "LIBC_CONFIGURATION": "defaults", "SAFE_ENV": "defaults", "SYSTEM_LIBRARIES": "defaults",
    "ALL": "flags", "ALLOW_ALL_MEANING": "flags", "add_arguments": "flags", "apply_flags": "flags", "build": "flags",
    "from_args": "flags", "from_spawned": "flags", "parse": "flags",
    "Learner": "learner", "finish": "learner", "tempdir": "learner",
    "apply_table": "loading", "find_pyproject": "loading", "load_file": "loading", "load_toml": "loading",
    "PathRules": "model", "Policy": "model", "PolicyError": "model", "Rule": "model", "covers": "model",
    "from_data": "model", "normalize": "model",
    "NetRule": "net", "local_name": "net", "parse_net": "net",
}

if TYPE_CHECKING:
    from .builder import Builder, build_default
    from .defaults import LIBC_CONFIGURATION, SAFE_ENV, SYSTEM_LIBRARIES
    from .flags import ALL, ALLOW_ALL_MEANING, add_arguments, apply_flags, build, from_args, from_spawned, parse
    from .learner import Learner, finish, tempdir
    from .loading import apply_table, find_pyproject, load_file, load_toml
    from .model import PathRules, Policy, PolicyError, Rule, covers, from_data, normalize
    from .net import NetRule, local_name, parse_net


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


__all__ = ["ALL", "ALLOW_ALL_MEANING", "LIBC_CONFIGURATION", "SAFE_ENV", "SYSTEM_LIBRARIES",
           "Builder", "Learner", "NetRule", "PathRules", "Policy", "PolicyError", "Rule",
           "add_arguments", "apply_flags", "apply_table", "build", "build_default", "covers", "find_pyproject",
           "finish", "from_args", "from_data", "from_spawned", "load_file", "load_toml", "local_name",
           "normalize", "parse", "parse_net", "tempdir"]
