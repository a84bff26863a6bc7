"""Network rules: what `--allow-net=HOST:PORT` and `net.*` keys mean, and which names need no resolver.

Apart from the policy object because it is a small language of its own (addresses, CIDR blocks, 10.1.*.*
wildcards, port ranges) that the flags, the TOML loader, the learner and `from_data` all parse the same way.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


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


# An IPv4-mapped IPv6 loopback address (::ffff:127.0.0.1) is loopback too.
MAPPED_LOOPBACK = ipaddress.ip_network("::ffff:127.0.0.0/104")


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
    return ip_address_of(name) is not None or _inet_aton_form(name)


def ip_address_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The numeric address `host` names (a scope id after % dropped), or None for a name."""
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
