"""Building a policy: grants and denials accumulated from every source (defaults, file, flags), then frozen.

Denials always win over grants, whatever their source: the order rules are added in changes only which origin
a message names, never the decision.
"""

from __future__ import annotations

import os
import shutil

from ocall_bridge.calls import CALLS

from .defaults import SAFE_ENV, default_paths
from .model import CALL_NAMES, PathRules, Policy, Rule, normalize
from .net import parse_net


class Builder:
    """Accumulates grants and denials from every source, then makes the Policy."""

    def __init__(self) -> None:
        self.read = PathRules("read")
        self.write = PathRules("write")
        self.connect: list[Rule] = []
        self.bind: list[Rule] = []
        self.net_all: Rule | None = None
        self.net_deny: list[Rule] = []
        self.env_all: Rule | None = None
        self.env_allow: list[Rule] = []
        self.env_deny: list[Rule] = []
        self.env_set: dict[str, str] = {}
        self.families: set[str] | None = None  # None: every family
        self.call_allow: set[str] = set()
        self.call_deny: set[str] = set()
        self.native: dict[str, bool] = {"ffi": False, "run": False}
        self.source: str | None = None
        self.violation = "raise"
        self.warnings: list[str] = []
        self.encrypted: list[bytes] = []
        self.encrypted_bound = "signer"
        self.programs: dict[str, str] = {}

    # -- grants ----------------------------------------------------------------------------------------------
    def add_path(self, kind: str, allow: bool, value: str | bytes, origin: str, base: str) -> None:
        rules = self.read if kind == "read" else self.write
        if isinstance(value, str) and "\0" in value or isinstance(value, bytes) and b"\0" in value:
            raise ValueError(f"{value!r} can never match: a path cannot contain NUL")
        if value in ("", b""):
            raise ValueError("an empty path can never match")
        raw = os.fsencode(value)
        raw = os.path.expanduser(raw) if raw.startswith(b"~") else raw
        if not raw.startswith(b"/"):
            raw = os.fsencode(base) + b"/" + raw
        (rules.allow if allow else rules.deny).append(Rule(normalize(raw), origin))

    def add_encrypted(self, value: str, origin: str, base: str) -> None:
        """A folder whose files are stored encrypted (enclave_libc/encfs.py); the program may read and write it."""
        raw = os.fsencode(value)
        raw = os.path.expanduser(raw) if raw.startswith(b"~") else raw
        if not raw or b"\0" in raw:
            raise ValueError(f"{value!r} is not a folder")
        if not raw.startswith(b"/"):
            raw = os.fsencode(base) + b"/" + raw
        folder = normalize(raw)
        if folder == b"/":
            raise ValueError("the whole file system cannot be an encrypted folder")
        if folder not in self.encrypted:
            self.encrypted.append(folder)
        for kind in ("read", "write"):
            self.add_path(kind, True, folder, origin, base)

    def add_program(self, name: str) -> None:
        """A host program the enclave may run by name (--allow-run=NAME): resolved on the host's PATH now, so
        the one that runs is the one the policy named, whatever PATH says later or inside."""
        if not name or "/" in name or "\0" in name or name in (".", ".."):
            raise ValueError(f"{name!r} is not a program name (a name found on PATH, without '/')")
        where = shutil.which(name, path=os.environ.get("PATH", os.defpath))
        if where is None:
            raise ValueError(f"{name!r} is not a program on the host's PATH ({os.environ.get('PATH', os.defpath)})")
        self.programs[name] = os.path.abspath(where)

    def add_all(self, kind: str, origin: str) -> None:
        rule = Rule(None, origin)
        if kind == "read":
            self.read.all = rule
        elif kind == "write":
            self.write.all = rule
        elif kind == "net":
            self.net_all = rule
        elif kind == "env":
            self.env_all = rule

    def add_net(self, which: str, text: str, origin: str) -> None:
        rules = [Rule(r, origin) for r in parse_net(text)]
        if which == "deny":
            self.net_deny += rules
            return
        if which in ("allow", "connect"):
            self.connect += rules
        if which in ("allow", "bind"):
            self.bind += rules

    def add_env(self, allow: bool, pattern: str, origin: str) -> None:
        if not pattern or "=" in pattern or "\0" in pattern:
            raise ValueError(f"{pattern!r} can never match a variable name")
        (self.env_allow if allow else self.env_deny).append(Rule(pattern, origin))

    def allow_everything(self, origin: str) -> None:
        for kind in ("read", "write", "net", "env"):
            self.add_all(kind, origin)
        self.families = None
        self.call_allow = set(CALL_NAMES)

    # -- defaults --------------------------------------------------------------------------------------------
    def add_defaults(self, kind: str | None = None, target: str | None = None, cwd: str | None = None) -> None:
        """The grants an ordinary script needs (`defaults.py` says which and why)."""
        cwd = cwd or os.getcwd()
        for access, path, origin in default_paths(kind, target, cwd):
            self.add_path(access, True, path, origin, cwd)
        for name in SAFE_ENV:
            self.add_env(True, name, "default: the safe list")

    # -- the result ------------------------------------------------------------------------------------------
    def build(self) -> Policy:
        if self.families is None:
            calls = set(CALL_NAMES)
        else:
            calls = {c.name for c in CALLS if c.family in self.families}
        calls = (calls | self.call_allow) - self.call_deny
        return Policy(read=self.read, write=self.write, connect=self.connect, bind=self.bind, net_all=self.net_all,
                      net_deny=self.net_deny, env_all=self.env_all, env_allow=self.env_allow,
                      env_deny=self.env_deny, env_set=self.env_set, calls=frozenset(calls), native=self.native,
                      source=self.source, violation=self.violation, encrypted=tuple(self.encrypted),
                      encrypted_bound=self.encrypted_bound, programs=self.programs)


def build_default(kind: str | None, target: str | None, cwd: str | None = None) -> Policy:
    """The default policy alone (what the library API means by "the command line's defaults")."""
    b = Builder()
    b.add_defaults(kind, target, cwd)
    return b.build()
