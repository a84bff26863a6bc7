"""The allowlist policy object: which POSIX exists inside the enclave, and which host resources it may touch.

Two questions, kept apart:

* **calls** - which rows of `ocall_bridge/calls.py` exist at all (families and single calls).  A call outside the
  set fails with ENOSYS, asked through `call_allowed`.
* **resources** - which paths may be read or written, which addresses connected to or bound, which host
  environment variables seen.  Outside: EACCES, asked through `check`, on both sides of the boundary.

This module is the answer only: the rules, the `Policy` that judges with them, and its plain-data form
(`to_data` / `from_data`, which the process backend sends to its child).  Where rules come from (defaults,
TOML, flags, a learning run) lives beside it in this package.

Paths are decided on their lexically normalized form here (so `/data/../etc/passwd` is judged as
`/etc/passwd`); what a symlink or `..` really reaches is decided by the kernel on the host
(`ocall_bridge/host/confine.py`), beneath the roots this policy names.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ocall_bridge.access import ALLOW_ALL, Absent, Access
from ocall_bridge.calls import CALLS, FAMILIES
from ocall_bridge.platform import MESSAGE, forbidden

from .net import MAPPED_LOOPBACK, ip_address_of, local_name, parse_net

# The control family (the attach handshake) is not optional: without it there is no enclave.
ALWAYS_CALLS = frozenset(c.name for c in CALLS if c.family == "control")
CALL_NAMES = frozenset(c.name for c in CALLS)
USER_FAMILIES = tuple(f for f in FAMILIES if f != "control")

_CACHE_MAX = 8192


class PolicyError(ValueError):
    """A policy that cannot be used: the message names the file, key and problem."""


# ---------------------------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------------------------

def normalize(path: bytes) -> bytes:
    """The lexical form a path is judged on: absolute, no '.', '..' or repeated slashes."""
    if (b"//" not in path and b"/./" not in path and b"/../" not in path
            and not path.endswith((b"/.", b"/..")) and (len(path) == 1 or not path.endswith(b"/"))):
        return path  # the common case, already normal: skip the (pure Python) normpath
    p = posixpath.normpath(path)
    return b"/" + p.lstrip(b"/") if p.startswith(b"//") else p


def covers(root: bytes, path: bytes) -> bool:
    """Whether `path` is `root` or beneath it (component-wise, so /data does not cover /database)."""
    if root == b"/":
        return True
    return path == root or (path.startswith(root) and path[len(root):len(root) + 1] == b"/")


@dataclass(frozen=True)
class Rule:
    value: Any  # bytes for paths, NetRule for addresses, str pattern for env names
    origin: str  # where it came from, for messages: "--allow-read", "read.allow in policy.toml", "default: ..."


@dataclass
class PathRules:
    kind: str  # "read" or "write"
    all: Rule | None = None
    allow: list[Rule] = field(default_factory=list)
    deny: list[Rule] = field(default_factory=list)

    def denied_by(self, path: bytes) -> Rule | None:
        for rule in self.deny:
            if covers(rule.value, path):
                return rule
        return None

    def granted_by(self, path: bytes) -> Rule | None:
        if self.denied_by(path):
            return None
        if self.all is not None:
            return self.all
        best = None
        for rule in self.allow:
            if covers(rule.value, path) and (best is None or len(rule.value) > len(best.value)):
                best = rule
        return best

    def roots(self) -> tuple[bytes, ...] | None:
        if self.all is not None:
            return (b"/",) if self.deny else None  # with nothing denied there is nothing to confine
        return tuple(sorted({r.value for r in self.allow}, key=len, reverse=True))


# ---------------------------------------------------------------------------------------------------------------
# The policy
# ---------------------------------------------------------------------------------------------------------------

_MISSING = object()


class Policy(Access):
    """A built policy: immutable once made; decisions are cached (they depend only on the arguments)."""

    def __init__(self, *, read: PathRules, write: PathRules, connect: list[Rule], bind: list[Rule],
                 net_all: Rule | None, net_deny: list[Rule], env_all: Rule | None, env_allow: list[Rule],
                 env_deny: list[Rule], env_set: dict[str, str], calls: frozenset[str], native: dict[str, bool],
                 source: str | None = None, violation: str = "raise", encrypted: tuple[bytes, ...] = (),
                 encrypted_bound: str = "signer", programs: dict[str, str] | None = None) -> None:
        self.read, self.write = read, write
        self.encrypted, self.encrypted_bound = tuple(encrypted), encrypted_bound
        self.violation = violation
        self.connect, self.bind, self.net_all, self.net_deny = connect, bind, net_all, net_deny
        self.env_all, self.env_allow, self.env_deny, self.env_set = env_all, env_allow, env_deny, env_set
        self.calls = calls | ALWAYS_CALLS
        self.native = native
        self.programs = dict(programs or {})  # --allow-run=NAME: name -> the path it resolved to at load
        self.source = source  # the policy file, named in hints
        self._cache: dict[tuple[str, Any], str | None] = {}
        self._ancestors = self._ancestor_set()

    # -- the Access interface --------------------------------------------------------------------------------
    def call_allowed(self, name: str) -> bool:
        return name in self.calls

    def check(self, call: str, kind: str, resource: Any) -> str | None:
        key = (kind, resource)
        found = self._cache.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        if isinstance(resource, bytes):
            answer = MESSAGE if forbidden(normalize(resource), kind) else self._check_path(kind, resource)
        elif isinstance(resource, tuple) and len(resource) == 6:
            answer = self._check_addr(kind, resource)
        elif isinstance(resource, str) and kind == "resolve":
            answer = self._check_name(resource)
        else:
            answer = f"posix_shim cannot judge a {kind} of {resource!r}"
        if len(self._cache) < _CACHE_MAX:
            self._cache[key] = answer
        return answer

    def env_allowed(self, name: str) -> bool:
        if any(fnmatch.fnmatchcase(name, r.value) for r in self.env_deny):
            return False
        return self.env_all is not None or any(fnmatch.fnmatchcase(name, r.value) for r in self.env_allow)

    def env_values(self) -> dict[str, str]:
        return dict(self.env_set)

    def native_allowed(self, what: str) -> bool:
        return bool(self.native.get(what, False))

    def run_programs(self) -> dict[str, str]:
        return dict(self.programs)

    def roots(self, kind: str) -> tuple[bytes, ...] | None:
        if kind == "stat":
            read, write = self.read.roots(), self.write.roots()
            if read is None or write is None:
                return None
            return tuple(sorted(set(read) | set(write), key=len, reverse=True))
        return {"read": self.read, "write": self.write}[kind].roots()

    def denials_within(self, root: bytes) -> bool:
        return any(covers(root, r.value) or covers(r.value, root) for r in self.read.deny + self.write.deny)

    # -- paths ---------------------------------------------------------------------------------------------
    def _hint(self, flag: str, value: str, key: str) -> str:
        where = f", or add it to {key} in {self.source}" if self.source else ""
        return f"allow with {flag}={value}{where}"

    def _check_path(self, kind: str, raw: bytes) -> str | None:
        path = normalize(raw)
        text = os.fsdecode(path)
        if kind == "stat":
            # Metadata is visible wherever reading or writing is, and on the directories leading to a grant
            # (realpath, chdir and imports walk them); nothing else.
            if self.read.granted_by(path) or self.write.granted_by(path) or path in self._ancestors:
                return None
            rule = self.read.denied_by(path)
            if rule:
                return f"metadata of {text} is hidden by {rule.origin}"
            if posixpath.dirname(path) in self._ancestors:
                # A name probed in a folder above a grant (.git, pyproject.toml, setup.cfg in every parent, as
                # black and git-aware tools look): one grant per name would be a dead end, so say the one step.
                return Absent(f"no read access to {text} ({self._hint('--allow-read', text, 'read.allow')}; a "
                              f"program that looks for files in the folders above its own needs one grant per "
                              f"name: run it once with --learn=FILE to record them all, then with --policy=FILE)")
            # Outside every grant and not denied by a rule: not in the enclave's view (access.Absent, ENOENT).
            return Absent(f"no read access to {text} ({self._hint('--allow-read', text, 'read.allow')})")
        rules = self.read if kind == "read" else self.write if kind == "write" else None
        if rules is None:
            return f"unknown access kind {kind!r}"
        if rules.granted_by(path):
            return None
        rule = rules.denied_by(path)
        if rule:
            return f"{kind} access to {text} is denied by {rule.origin}"
        return f"no {kind} access to {text} ({self._hint(f'--allow-{kind}', text, f'{kind}.allow')})"

    def _ancestor_set(self) -> frozenset[bytes]:
        out = set()
        for rules in (self.read, self.write):
            for rule in rules.allow:
                p = rule.value
                while p != b"/":
                    p = posixpath.dirname(p)
                    out.add(p)
        return frozenset(out)

    # -- addresses -----------------------------------------------------------------------------------------
    def _check_addr(self, kind: str, addr: tuple) -> str | None:
        family, host, port, _, _, path = addr
        if family == 0 and not host and not port and not path:
            return None  # AF_UNSPEC, no address: sendmsg to the connected peer, whose connect was checked
        if family == 1:  # AF_UNIX: a path is a file; the abstract namespace is the network's
            if not path:
                return None  # autobind / unnamed: names nothing on the host
            if path.startswith(b"\0"):
                if self.net_all is not None and not self.net_deny:
                    return None
                name = "@" + os.fsdecode(path[1:])
                return f"no access to the abstract unix socket {name} (allow with --allow-net)"
            # connect(2) needs write permission on the socket file, bind(2) creates it: both are writes.
            return self._check_path("write", path)
        what = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        ip = ip_address_of(host)
        for rule in self.net_deny:
            if rule.value.matches(ip, port):
                return f"network access to {what} is denied by {rule.origin}"
        if self.net_all is not None:
            return None
        rules = self.connect if kind == "connect" else self.bind if kind == "bind" else None
        if rules is None:
            return f"unknown access kind {kind!r}"
        if any(r.value.matches(ip, port) for r in rules):
            return None
        verb = "connect to" if kind == "connect" else "listen on"
        return f"no permission to {verb} {what} ({self._hint('--allow-net', what, f'net.{kind}')})"

    def _check_name(self, name: str) -> str | None:
        """Looking a name up is a network action (the host's resolver asks a DNS server, which learns the name:
        a channel out of the enclave), so it needs a grant that reaches past this machine: `--allow-net`, or any
        connect/bind grant beyond loopback (a program given example.com's address connects by its name).
        Numeric addresses, no name (a passive/loopback lookup) and localhost are answered without asking anyone.
        """
        if local_name(name):
            return None
        for rule in self.net_deny:
            if rule.value.network is None and (rule.value.low, rule.value.high) == (0, 65535):
                return f"network access to {name} is denied by {rule.origin}"
        if self.net_all is not None:
            return None
        for rule in self.connect + self.bind:
            net = rule.value.network
            if net is None or not (net.is_loopback or (net.version == 6 and net.subnet_of(MAPPED_LOOPBACK))):
                return None
        where = f", or set net.allow = true in {self.source}" if self.source else ""
        return f"no permission to resolve {name} (allow with --allow-net{where})"

    # -- plain data ----------------------------------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        def rules(rs: Iterable[Rule]) -> list[list[str]]:
            return [[os.fsdecode(r.value) if isinstance(r.value, bytes) else getattr(r.value, "text", r.value),
                     r.origin] for r in rs]

        def one(r: Rule | None) -> str | None:
            return None if r is None else r.origin

        return {
            "version": 1,
            "read": {"all": one(self.read.all), "allow": rules(self.read.allow), "deny": rules(self.read.deny)},
            "write": {"all": one(self.write.all), "allow": rules(self.write.allow), "deny": rules(self.write.deny)},
            "net": {"all": one(self.net_all), "connect": rules(self.connect), "bind": rules(self.bind),
                    "deny": rules(self.net_deny)},
            "env": {"all": one(self.env_all), "allow": rules(self.env_allow), "deny": rules(self.env_deny),
                    "set": dict(self.env_set)},
            "calls": sorted(self.calls),
            "native": dict(self.native),
            "run": dict(self.programs),
            "violation": self.violation,
            "source": self.source,
            **({"encrypted": {"paths": [os.fsdecode(p) for p in self.encrypted], "bound_to": self.encrypted_bound}}
               if self.encrypted else {}),
        }

    # -- for people ----------------------------------------------------------------------------------------
    def describe(self) -> str:
        """The effective rules, one per line, each with where it came from."""
        lines = []

        def paths(rules: PathRules) -> None:
            if rules.all:
                lines.append(f"  {rules.kind:6} everything                        ({rules.all.origin})")
            for r in rules.allow:
                lines.append(f"  {rules.kind:6} {os.fsdecode(r.value):32}  ({r.origin})")
            for r in rules.deny:
                lines.append(f"  deny {rules.kind:6} {os.fsdecode(r.value):27}  ({r.origin})")

        lines.append("resources:")
        paths(self.read)
        paths(self.write)
        if self.net_all:
            lines.append(f"  net    everything                        ({self.net_all.origin})")
        for kind, rs in (("connect", self.connect), ("bind", self.bind)):
            for r in rs:
                lines.append(f"  {kind:6} {r.value.text:32}  ({r.origin})")
        for r in self.net_deny:
            lines.append(f"  deny net {r.value.text:29}  ({r.origin})")
        if not (self.net_all or self.connect or self.bind):
            lines.append("  net    none")
        if self.env_all:
            lines.append(f"  env    every host variable               ({self.env_all.origin})")
        else:
            names = sorted({r.value for r in self.env_allow})
            lines.append(f"  env    {' '.join(names) or 'none'}")
        for r in self.env_deny:
            lines.append(f"  deny env {r.value:29}  ({r.origin})")
        for k, v in sorted(self.env_set.items()):
            lines.append(f"  setenv {k}={v}")
        for p in self.encrypted:
            lines.append(f"  encrypted {os.fsdecode(p):28}  (bound to the {self.encrypted_bound})")
        lines.append(f"host violations: {self.violation}")
        lines.append("native code:")
        lines.append(f"  ffi (ctypes/cffi libraries)  {'allowed' if self.native.get('ffi') else 'refused'}")
        lines.append(f"  run (subprocess/fork/exec)   {'allowed' if self.native.get('run') else 'refused'}")
        lines.append("host programs (run outside the enclave):")
        for name, where in sorted(self.programs.items()):
            lines.append(f"  {name:28} {where}")
        if not self.programs:
            lines.append("  none")
        lines.append("calls:")
        for fam in USER_FAMILIES:
            names = [c.name for c in CALLS if c.family == fam]
            on = [n for n in names if n in self.calls]
            if len(on) == len(names):
                lines.append(f"  {fam:9} all {len(names)}")
            elif not on:
                lines.append(f"  {fam:9} none (ENOSYS)")
            else:
                off = sorted(set(names) - set(on))
                lines.append(f"  {fam:9} {len(on)} of {len(names)}; ENOSYS: {', '.join(off)}")
        return "\n".join(lines)


def from_data(data: dict[str, Any]) -> Access:
    """Rebuild a policy from `to_data()` output (the process backend sends it to the child as JSON)."""
    if not isinstance(data, dict):
        raise PolicyError("policy data must be a dict")
    if "version" not in data:
        if data.get("allow_all"):
            return ALLOW_ALL
        raise PolicyError("policy data has no version")
    if data["version"] != 1:
        raise PolicyError(f"policy data version {data['version']!r} is not supported")

    def one(origin: str | None) -> Rule | None:
        return None if origin is None else Rule(None, str(origin))

    def paths(kind: str) -> PathRules:
        d = data[kind]
        return PathRules(kind, one(d["all"]), [Rule(normalize(os.fsencode(v)), o) for v, o in d["allow"]],
                         [Rule(normalize(os.fsencode(v)), o) for v, o in d["deny"]])

    def nets(items: list) -> list[Rule]:
        return [Rule(n, o) for v, o in items for n in parse_net(v)]

    net, env = data["net"], data["env"]
    enc = data.get("encrypted") or {}
    return Policy(read=paths("read"), write=paths("write"), connect=nets(net["connect"]), bind=nets(net["bind"]),
                  net_all=one(net["all"]), net_deny=nets(net["deny"]), env_all=one(env["all"]),
                  env_allow=[Rule(v, o) for v, o in env["allow"]], env_deny=[Rule(v, o) for v, o in env["deny"]],
                  env_set={str(k): str(v) for k, v in env["set"].items()},
                  calls=frozenset(c for c in data["calls"] if c in CALL_NAMES),
                  native={str(k): bool(v) for k, v in data["native"].items()}, source=data.get("source"),
                  violation="abort" if data.get("violation") == "abort" else "raise",
                  encrypted=tuple(normalize(os.fsencode(p)) for p in enc.get("paths", [])),
                  encrypted_bound="enclave" if enc.get("bound_to") == "enclave" else "signer",
                  programs={str(k): str(v) for k, v in (data.get("run") or {}).items()})
