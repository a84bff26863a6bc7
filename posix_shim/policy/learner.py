"""Learn mode (`--learn=FILE`): run with everything allowed, then write the smallest policy for that run.

Apart from the policy object because it is not a policy (it allows everything and records), and from the flags
because it has its own output: a TOML file the next run loads with `--policy`.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from ocall_bridge.access import Access

from .model import Policy, covers, normalize
from .net import ip_address_of


def tempdir() -> bytes:
    """The system temp directory as the host sees it (learned policies grant it whole: names there are random)."""
    return os.fsencode(os.path.realpath(tempfile.gettempdir()))


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for ports it hands out (bind to port 0), so a learned grant covers the next run's."""
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
                ip = ip_address_of(host)
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
