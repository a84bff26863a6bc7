"""The allowlist policy: which POSIX exists inside the enclave, and which host resources it may touch.

Two questions, kept apart:

* **calls** - which rows of `ocall_bridge/calls.py` exist at all (families and single calls).  A call outside the
  set fails with ENOSYS, asked through `call_allowed`.
* **resources** - which paths may be read or written, which addresses connected to or bound, which host
  environment variables seen.  Outside: EACCES, asked through `check`, on both sides of the boundary.

A policy comes from TOML (`--policy FILE`, or `[tool.posix_shim]` in the nearest pyproject.toml), from Deno-style
flags, and from the defaults that let an ordinary script run.  Denials always win over grants, whatever their
source.  See docs/policy.md for every key and flag.

Paths are decided on their lexically normalized form here (so `/data/../etc/passwd` is judged as
`/etc/passwd`); what a symlink or `..` really reaches is decided by the kernel on the host
(`ocall_bridge/host/confine.py`), beneath the roots this policy names.
"""

from __future__ import annotations

import argparse
import fnmatch
import ipaddress
import json
import os
import posixpath
import shutil
import site
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ocall_bridge.access import ALLOW_ALL, Access
from ocall_bridge.calls import CALLS, FAMILIES
from ocall_bridge.platform import MESSAGE, forbidden

ALL = "\x00all"  # the const of `--allow-read` given without a value: everything

# Host variables a program sees without any grant: locale, time zone and terminal shape.  HOME, USER and PATH are
# left out on purpose: they name the host's user and layout, and nothing inside the enclave can exec a PATH entry.
# Files the C library reads by itself on behalf of ordinary calls (user and group names for pwd/grp and
# Path.owner(), the time zone for localtime, service and protocol names, the loader's cache for an extension
# module's dependencies, the hosts file for "localhost").  On the confined process backend native code's opens
# are checked by the host like any other, so without these, `pathlib.Path.owner()` or `time.localtime()` would
# fail inside where they work natively.  Nothing here is a secret: all are world-readable by design.
LIBC_CONFIGURATION = ("/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/localtime", "/usr/share/zoneinfo",
                      "/etc/ld.so.cache", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf", "/etc/services",
                      "/etc/protocols", "/etc/ssl/openssl.cnf", "/usr/lib/ssl/openssl.cnf", "/usr/share/locale",
                      # The terminal descriptions readline and curses load (pdb and the REPL import readline).
                      "/etc/terminfo", "/usr/share/terminfo",
                      # The public CA certificates (ssl.create_default_context verifies servers with them).
                      "/etc/ssl/certs", "/usr/share/ca-certificates",
                      # What platform.freedesktop_os_release() and pip's user agent read to name the system.
                      "/etc/os-release", "/etc/debian_version", "/etc/lsb-release")
# The shared libraries an extension module links against (libcrypto for hashlib, libsqlite3, libz, libffi ...):
# the dynamic loader opens them natively when the module is imported.  Read-only, and public by nature.
SYSTEM_LIBRARIES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")


SAFE_ENV = ("LANG", "LANGUAGE", "LC_*", "TZ", "TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES",
            "PYTHONIOENCODING", "PYTHONUTF8")

# The control family (the attach handshake) is not optional: without it there is no enclave.
_ALWAYS_CALLS = frozenset(c.name for c in CALLS if c.family == "control")
_CALL_NAMES = frozenset(c.name for c in CALLS)
_USER_FAMILIES = tuple(f for f in FAMILIES if f != "control")

_CACHE_MAX = 8192

# What -A / --allow-all means, in one place: --help, docs/cli.md, docs/getting-started.md and docs/policy.md
# quote it (tests/test_usage.py compares them), so no page can promise more than the flag does.
ALLOW_ALL_MEANING = ("allows every file, network address, environment variable and POSIX call; --deny-* rules "
                     "still apply, and loading native libraries (ctypes, cffi) or starting processes (subprocess, "
                     "fork/exec) stays refused unless --allow-ffi or --allow-run is given too")


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
# Network
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NetRule:
    text: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None  # None: any host
    low: int = 0
    high: int = 65535

    def matches(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, port: int) -> bool:
        if not self.low <= port <= self.high:
            return False
        if self.network is None:
            return True
        if ip is None:
            return False
        if ip.version == self.network.version:
            return ip in self.network
        mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
        return mapped is not None and mapped in self.network


def parse_net(text: str) -> list[NetRule]:
    """'HOST[:PORT]' -> rules.  HOST: an address, a CIDR block, 127.0.0.* style, [v6], localhost or *.
    PORT: N, N-M or *.  Raises ValueError naming the problem."""
    s = text.strip()
    if not s:
        raise ValueError("empty address")
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: unclosed '['")
        host, rest = s[1:end], s[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']'")
        port = rest[1:] if rest else ""
    elif s.count(":") > 1:  # a bare IPv6 address (or block): no port
        host, port = s, ""
    else:
        host, _, port = s.partition(":")
    low, high = _parse_ports(port, text)
    if host in ("*", ""):
        return [NetRule(text, None, low, high)]
    if host == "localhost":
        return [NetRule(text, ipaddress.ip_network("127.0.0.0/8"), low, high),
                NetRule(text, ipaddress.ip_network("::1/128"), low, high)]
    if "*" in host:
        parts = host.split(".")
        first = parts.index("*") if "*" in parts else -1
        if len(parts) != 4 or first < 0 or any(p != "*" for p in parts[first:]) or "*" in "".join(parts[:first]):
            raise ValueError(f"{text!r}: '*' may only replace the trailing parts of an IPv4 address (10.1.*.*)")
        host = ".".join(parts[:first] + ["0"] * (4 - first)) + f"/{8 * first}"
    try:
        network = ipaddress.ip_network(host.split("%")[0], strict=False)
    except ValueError:
        raise ValueError(
            f"{text!r}: {host!r} can never match: connections are checked against numeric addresses, not names "
            f"(give the address, a CIDR block, localhost or *)") from None
    return [NetRule(text, network, low, high)]


def _parse_ports(port: str, text: str) -> tuple[int, int]:
    if port in ("", "*"):
        return 0, 65535
    low_s, dash, high_s = port.partition("-")
    try:
        low = int(low_s)
        high = int(high_s) if dash else low
    except ValueError:
        raise ValueError(f"{text!r}: port must be N, N-M or *, not {port!r}") from None
    if not (0 <= low <= high <= 65535):
        raise ValueError(f"{text!r}: port range {port!r} can never match (ports are 0-65535, low <= high)")
    return low, high


_MAPPED_LOOPBACK = ipaddress.ip_network("::ffff:127.0.0.0/104")


def _inet_aton_form(name: str) -> bool:
    """Whether glibc's inet_aton reads `name` as an IPv4 address (127.1, 0x7f.0.0.1, 2130706433 ...): such a
    name is numeric to getaddrinfo, which never looks it up."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 4:
        return False
    limits = [0xFFFFFFFF, 0xFFFFFF, 0xFFFF, 0xFF][len(parts) - 1]
    values = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                v = int(part[2:], 16) if part[2:] else 0
            elif len(part) > 1 and part.startswith("0"):
                v = int(part, 8)
            else:
                v = int(part, 10) if part.isdigit() else -1
        except ValueError:
            return False
        if v < 0:
            return False
        values.append(v)
    return all(v <= 0xFF for v in values[:-1]) and values[-1] <= limits


def local_name(name: str) -> bool:
    """A name getaddrinfo answers without asking a resolver: none, a numeric address, or localhost."""
    if name == "" or name.lower().rstrip(".") == "localhost":
        return True
    return _ip(name) is not None or _inet_aton_form(name)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


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
        self.calls = calls | _ALWAYS_CALLS
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
                return (f"no read access to {text} ({self._hint('--allow-read', text, 'read.allow')}; a program "
                        f"that looks for files in the folders above its own needs one grant per name: run it once "
                        f"with --learn=FILE to record them all, then with --policy=FILE)")
            return f"no read access to {text} ({self._hint('--allow-read', text, 'read.allow')})"
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
        ip = _ip(host)
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
            if net is None or not (net.is_loopback or (net.version == 6 and net.subnet_of(_MAPPED_LOOPBACK))):
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
        for fam in _USER_FAMILIES:
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
                  calls=frozenset(c for c in data["calls"] if c in _CALL_NAMES),
                  native={str(k): bool(v) for k, v in data["native"].items()}, source=data.get("source"),
                  violation="abort" if data.get("violation") == "abort" else "raise",
                  encrypted=tuple(normalize(os.fsencode(p)) for p in enc.get("paths", [])),
                  encrypted_bound="enclave" if enc.get("bound_to") == "enclave" else "signer",
                  programs={str(k): str(v) for k, v in (data.get("run") or {}).items()})


# ---------------------------------------------------------------------------------------------------------------
# Building: defaults, then the file, then the flags
# ---------------------------------------------------------------------------------------------------------------

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
        self.call_allow = set(_CALL_NAMES)

    # -- defaults --------------------------------------------------------------------------------------------
    def add_defaults(self, kind: str | None = None, target: str | None = None, cwd: str | None = None) -> None:
        cwd = cwd or os.getcwd()
        install = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
        try:
            install += site.getsitepackages() + [site.getusersitepackages()]
        except AttributeError:  # a site module without these (embedded builds)
            pass
        # sys.path[0] is where the runner itself was started from (the cwd for `python -m posix_shim`), not part
        # of the installation; the program's own sys.path[0] is its script folder or the cwd, granted below.
        install += [p for p in sys.path[1:] if p]
        kept: list[bytes] = []
        for p in sorted({normalize(os.fsencode(os.path.abspath(p))) for p in install}, key=lambda p: (len(p), p)):
            if os.path.exists(p) and not any(covers(k, p) for k in kept):  # nested entries add nothing
                kept.append(p)
                self.add_path("read", True, p, "default: the Python installation", cwd)
        if kind == "path" and target and target != "-":
            self.add_path("read", True, os.path.dirname(os.path.abspath(target)), "default: the script's folder",
                          cwd)
        self.add_path("read", True, cwd, "default: the current directory", cwd)
        self.add_path("write", True, cwd, "default: the current directory", cwd)
        for dev in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"):
            self.add_path("read", True, dev, "default: devices", cwd)
        for conf in LIBC_CONFIGURATION:
            # Granted whether or not it exists here: a program probing for one (/etc/lsb-release) must get the
            # FileNotFoundError it handles natively, not a PermissionError.
            self.add_path("read", True, conf, "default: the C library's configuration", cwd)
        for lib in SYSTEM_LIBRARIES:
            if os.path.isdir(lib):
                self.add_path("read", True, lib, "default: shared libraries", cwd)
        self.add_path("write", True, "/dev/null", "default: devices", cwd)
        for name in SAFE_ENV:
            self.add_env(True, name, "default: the safe list")

    # -- the result ------------------------------------------------------------------------------------------
    def build(self) -> Policy:
        if self.families is None:
            calls = set(_CALL_NAMES)
        else:
            calls = {c.name for c in CALLS if c.family in self.families}
        calls = (calls | self.call_allow) - self.call_deny
        return Policy(read=self.read, write=self.write, connect=self.connect, bind=self.bind, net_all=self.net_all,
                      net_deny=self.net_deny, env_all=self.env_all, env_allow=self.env_allow,
                      env_deny=self.env_deny, env_set=self.env_set, calls=frozenset(calls), native=self.native,
                      source=self.source, violation=self.violation, encrypted=tuple(self.encrypted),
                      encrypted_bound=self.encrypted_bound, programs=self.programs)


# ---------------------------------------------------------------------------------------------------------------
# TOML
# ---------------------------------------------------------------------------------------------------------------

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
            if fam not in _USER_FAMILIES:
                raise PolicyError(f"{file}: {prefix}calls.families[{i}]: unknown family {fam!r} (families: "
                                  f"{', '.join(_USER_FAMILIES)})")
        b.families = set(calls["families"])
    for key in ("allow", "deny"):
        for i, name in enumerate(calls.get(key, [])):
            if name not in _CALL_NAMES:
                import difflib  # only for a mistake

                close = difflib.get_close_matches(name, sorted(_CALL_NAMES), n=1)
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


# ---------------------------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("policy", "what the enclave may touch (docs/policy.md); --deny-* wins")
    g.add_argument("--policy", metavar="FILE",
                   help="a policy TOML file (default: [tool.posix_shim] of the nearest pyproject.toml)")
    g.add_argument("--learn", metavar="FILE",
                   help="run with everything allowed and write the smallest policy for this run to FILE")
    g.add_argument("-A", "--allow-all", action="store_true", help=f"{ALLOW_ALL_MEANING.replace('%', '%%')}")
    for kind, what in (("read", "PATHS"), ("write", "PATHS"), ("net", "HOST:PORT"), ("env", "NAMES")):
        # nargs="?" with values only after '=': `--allow-read app.py` grants everything and runs app.py.
        # The metavar shows the '=': in the runner a value is only ever taken after it (cli.py).
        g.add_argument(f"--allow-{kind}", action="append", nargs="?", const=ALL, metavar=f"={what}",
                       help=f"allow {kind}: --allow-{kind}={what},... (the value only after '='; alone: everything)")
        g.add_argument(f"--deny-{kind}", action="append", nargs="?", const=ALL, metavar=f"={what}",
                       help=f"deny {kind}: --deny-{kind}={what},... (the value only after '='; wins over every "
                            f"grant)")
    g.add_argument("--allow-ffi", action="store_true", help="let the program load native libraries (ctypes/cffi)")
    g.add_argument("--allow-run", action="append", nargs="?", const=ALL, metavar="=NAMES",
                   help="let the program run these host programs by name (--allow-run=git,ls; they run outside "
                        "the enclave); alone: let it start any process natively (subprocess/fork)")
    g.add_argument("--encrypted", action="append", metavar="DIR",
                   help="store files under DIR encrypted and authenticated (docs/confidentiality.md); implies "
                        "read and write access to DIR")


def _split(values: Sequence[str] | None) -> list[str]:
    out = []
    for v in values or ():
        if v == ALL:
            out.append(ALL)
        else:
            out += [x for x in v.split(",") if x]  # "--allow-read=" alone names nothing
    return out


def apply_flags(b: Builder, args: argparse.Namespace, cwd: str | None = None) -> None:
    cwd = cwd or os.getcwd()
    if getattr(args, "allow_all", False):
        b.allow_everything("-A/--allow-all")
    for kind in ("read", "write"):
        for allow in (True, False):
            flag = f"--{'allow' if allow else 'deny'}-{kind}"
            for v in _split(getattr(args, f"{'allow' if allow else 'deny'}_{kind}", None)):
                if v == ALL:
                    if allow:
                        b.add_all(kind, flag)
                    else:
                        b.add_path(kind, False, "/", flag, cwd)
                    continue
                try:
                    b.add_path(kind, allow, v, f"{flag}={v}", cwd)
                except ValueError as exc:
                    raise PolicyError(f"{flag}: {exc}") from None
    for allow in (True, False):
        flag = f"--{'allow' if allow else 'deny'}-net"
        for v in _split(getattr(args, f"{'allow' if allow else 'deny'}_net", None)):
            try:
                if v == ALL:
                    if allow:
                        b.add_all("net", flag)
                    else:
                        b.add_net("deny", "*", flag)
                else:
                    b.add_net("allow" if allow else "deny", v, f"{flag}={v}")
            except ValueError as exc:
                raise PolicyError(f"{flag}: {exc}") from None
        flag = f"--{'allow' if allow else 'deny'}-env"
        for v in _split(getattr(args, f"{'allow' if allow else 'deny'}_env", None)):
            if v == ALL:
                if allow:
                    b.add_all("env", flag)
                else:
                    b.add_env(False, "*", flag)
                continue
            try:
                b.add_env(allow, v, f"{flag}={v}")
            except ValueError as exc:
                raise PolicyError(f"{flag}: {exc}") from None
    if getattr(args, "allow_ffi", False):
        b.native["ffi"] = True
    for v in _split(getattr(args, "allow_run", None)):
        if v == ALL:
            b.native["run"] = True
            continue
        try:
            b.add_program(v)
        except ValueError as exc:
            raise PolicyError(f"--allow-run: {exc}") from None
    for v in _split(getattr(args, "encrypted", None)):
        try:
            b.add_encrypted(v, f"--encrypted={v}", cwd)
        except ValueError as exc:
            raise PolicyError(f"--encrypted: {exc}") from None


def build(args: argparse.Namespace, kind: str | None = None, target: str | None = None,
          cwd: str | None = None) -> Policy:
    """The policy the runner uses: the file (or pyproject table, or defaults), then the flags on top."""
    cwd = cwd or os.getcwd()
    file = getattr(args, "policy", None)
    if file:
        b = load_file(file, kind=kind, target=target, cwd=cwd)
    else:
        found = find_pyproject(cwd)
        b = load_file(found, kind=kind, target=target, cwd=cwd) if found else Builder()
        if not found:
            b.add_defaults(kind, target, cwd)
    apply_flags(b, args, cwd)
    return b.build()


def parse(flags: Sequence[str] = (), kind: str | None = None, target: str | None = None,
          cwd: str | None = None) -> Policy:
    """A policy from command-line style flags, for the library API:
    `Enclave(policy=policy.parse(["--allow-read=data", "--policy=p.toml"], "path", "app.py"))`."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_arguments(parser)
    try:
        args, extra = parser.parse_known_args(list(flags))
    except argparse.ArgumentError as exc:
        raise PolicyError(f"bad policy flag: {exc}") from None
    if extra:
        raise PolicyError(f"not a policy flag: {' '.join(extra)}")
    return build(args, kind, target, cwd)


def from_args(args: argparse.Namespace, kind: str | None = None, target: str | None = None) -> Access:
    """The Access the runner hands down.  Raises PolicyError for a policy that cannot be used."""
    if getattr(args, "learn", None):
        return Learner(build_default(kind, target), args.learn)
    return build(args, kind, target)


def from_spawned(data: dict[str, Any], args: argparse.Namespace) -> Access:
    """The policy of a child enclave (`--spawned`): the parent host's copy, then any flags given on top.

    The parent's host builds the child's command line itself and lets no flag of the enclave's choosing onto it
    (ocall_bridge/pyargv.py); flags here come only from whoever runs the runner by hand."""
    base = from_data(data)
    if not isinstance(base, Policy):
        return base  # learn mode's parent: everything allowed, as inside the parent
    b = Builder()
    b.read, b.write, b.connect, b.bind = base.read, base.write, list(base.connect), list(base.bind)
    b.net_all, b.net_deny, b.env_all = base.net_all, list(base.net_deny), base.env_all
    b.env_allow, b.env_deny, b.env_set = list(base.env_allow), list(base.env_deny), dict(base.env_set)
    b.families, b.call_allow = set(), set(base.calls)
    b.native, b.source, b.violation = dict(base.native), base.source, base.violation
    b.encrypted, b.encrypted_bound = list(base.encrypted), base.encrypted_bound
    b.programs = dict(base.programs)
    apply_flags(b, args)
    return b.build()


def build_default(kind: str | None, target: str | None, cwd: str | None = None) -> Policy:
    b = Builder()
    b.add_defaults(kind, target, cwd)
    return b.build()


def tempdir() -> bytes:
    """The system temp directory as the host sees it (learned policies grant it whole: names there are random)."""
    return os.fsencode(os.path.realpath(tempfile.gettempdir()))


def _ephemeral_ports() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


class Learner(Access):
    """Learn mode: allows everything and remembers every resource the host was asked about.

    Recorded on whichever side sees every request: in sim the enclave and host share this object; on the process
    backend the child gets `{"allow_all": True}` and the parent's host records.  `write()` then keeps only what
    the default policy would refuse.
    """

    def __init__(self, baseline: Policy, out: str) -> None:
        self.baseline = baseline
        self.out = out
        self.seen: dict[tuple[str, Any], None] = {}  # insertion-ordered set

    def check(self, call: str, kind: str, resource: Any) -> str | None:
        self.seen[(kind, resource)] = None
        return None

    def native_allowed(self, what: str) -> bool:
        return True

    def run_programs(self) -> dict[str, str]:
        return {}  # learning runs every process natively (native_allowed)

    def to_data(self) -> dict[str, Any]:
        return {"allow_all": True}

    def learned(self) -> dict[str, list[str]]:
        """The grants beyond the defaults: {"read": [...], "write": [...], "connect": [...], "bind": [...]}."""
        tmp = tempdir()
        eph_low, eph_high = _ephemeral_ports()
        # Paths (bytes) for read and write, texts for connect and bind.
        out: dict[str, set[Any]] = {"read": set(), "write": set(), "connect": set(), "bind": set()}
        for kind, resource in list(self.seen):
            if kind == "resolve" or self.baseline.check("learn", kind, resource) is None:
                continue  # a name lookup is allowed by the connect grant learned for the address it gave
            if isinstance(resource, tuple):
                family, host, port, _, _, path = resource
                if family == 1:
                    if path.startswith(b"\0"):
                        out[kind].add("*")
                    else:
                        out["write"].add(normalize(path))
                    continue
                ip = _ip(host)
                text = host if ":" not in host else f"[{host}]"
                if kind == "connect" and ip is not None and ip.is_loopback and eph_low <= port <= eph_high:
                    # A port the kernel handed out in this run (a server bound to port 0): the next run gets
                    # another one, so the whole ephemeral range on this loopback address is granted.
                    out[kind].add(f"{text}:{eph_low}-{eph_high}")
                else:
                    out[kind].add(f"{text}:{port}")
                continue
            path = normalize(resource)
            if covers(tmp, path) and tmp != b"/":
                path = tmp  # tempfile names are random: the next run needs the folder
            out["read" if kind == "stat" else kind].add(path)
        result: dict[str, list[str]] = {}
        for kind, values in out.items():
            if kind in ("read", "write"):
                kept: list[bytes] = []
                for p in sorted(values, key=lambda v: (len(v), v)):
                    if not any(covers(k, p) for k in kept):
                        kept.append(p)
                result[kind] = sorted(os.fsdecode(p) for p in kept)
            else:
                result[kind] = sorted(values)
        return result

    def render(self, command: str = "") -> str:
        grants = self.learned()
        lines = ["# posix_shim policy learned from one run" + (f" of: {command}" if command else ""),
                 "# The defaults (Python installation, script folder, current directory, safe environment) apply.",
                 "# Run it with: python -m posix_shim --policy THIS_FILE ...", "", "defaults = true"]
        for table, keys in (("read", ("allow",)), ("write", ("allow",)), ("net", ("connect", "bind"))):
            entries = [(k, grants["read" if table == "read" else "write" if table == "write" else k]) for k in keys]
            if any(v for _, v in entries):
                lines += ["", f"[{table}]"]
                for key, values in entries:
                    if values:
                        items = "".join(f"    {json.dumps(v)},\n" for v in values)
                        lines.append(f"{key} = [\n{items}]")
        return "\n".join(lines) + "\n"

    def write(self, command: str = "") -> str:
        text = self.render(command)
        with open(self.out, "w", encoding="utf-8") as f:
            f.write(text)
        return text


def finish(access: Access, command: str = "") -> str | None:
    """After a run: a learning policy writes what it learned.  Returns a line for the user, or None."""
    if isinstance(access, Learner):
        access.write(command)
        n = sum(len(v) for v in access.learned().values())
        return f"learned policy written to {access.out} ({n} grant{'s' if n != 1 else ''} beyond the defaults)"
    return None


__all__ = ["ALL", "ALLOW_ALL_MEANING",
           "Policy", "Learner", "finish", "parse", "PolicyError", "Builder", "add_arguments", "apply_flags",
           "apply_table", "build", "from_args", "from_data", "from_spawned", "load_file", "normalize", "covers",
           "parse_net",
           "SAFE_ENV"]
