"""Name resolution under the policy: looking a name up is a network action.

Without a grant that reaches past this machine (`--allow-net`, or a connect/bind grant beyond loopback) a
getaddrinfo of a name is refused with EACCES and a message shaped like a connect denial; numeric addresses, no
name and localhost resolve inside every policy.  Checked on both sides of the boundary.
"""

from __future__ import annotations

import argparse
import errno
import re
import socket
from pathlib import Path

import pytest
from conftest import run_shim

from ocall_bridge.access import ALLOW_ALL
from ocall_bridge.host import sockets as host_sockets
from ocall_bridge.host.runtime import Host
from posix_shim import policy

GETADDRINFO = 115  # the row number in ocall_bridge/calls.py
NAME = "posix-shim-test.invalid"  # .invalid never resolves (RFC 6761); the tests never let it reach a resolver


def build(flags: list[str], cwd: Path) -> policy.Policy:
    parser = argparse.ArgumentParser()
    policy.add_arguments(parser)
    return policy.build(parser.parse_args(flags), "code", None, cwd=str(cwd))


def test_policy_decides_names_like_a_network_action(tmp_path: Path) -> None:
    default = build([], tmp_path)
    assert default.check("getaddrinfo", "resolve", NAME) == f"no permission to resolve {NAME} (allow with --allow-net)"
    for local in ("", "localhost", "LOCALHOST.", "127.0.0.1", "127.1", "0x7f.0.0.1", "2130706433", "::1",
                  "fe80::1%lo", "93.184.216.34"):
        assert default.check("getaddrinfo", "resolve", local) is None, local
    assert default.check("getaddrinfo", "resolve", "1.2.3.256") is not None  # not a number inet_aton accepts
    # Loopback grants reach nothing beyond this machine: names stay refused.
    assert build(["--allow-net=127.0.0.1,::1,localhost"], tmp_path).check("getaddrinfo", "resolve", NAME)
    # Everything, or an address beyond loopback: the program may look names up.
    assert build(["--allow-net"], tmp_path).check("getaddrinfo", "resolve", NAME) is None
    assert build(["--allow-net=10.0.0.0/8:443"], tmp_path).check("getaddrinfo", "resolve", NAME) is None
    # A deny of every address wins over the grant; a deny of one port does not stop lookups.
    assert build(["--allow-net", "--deny-net=*"], tmp_path).check("getaddrinfo", "resolve", NAME) == \
        f"network access to {NAME} is denied by --deny-net=*"
    assert build(["--allow-net", "--deny-net=*:25"], tmp_path).check("getaddrinfo", "resolve", NAME) is None


def test_learning_skips_lookups_and_keeps_the_connect(tmp_path: Path) -> None:
    learner = policy.Learner(build([], tmp_path), str(tmp_path / "learned.toml"))
    assert learner.check("getaddrinfo", "resolve", NAME) is None
    learner.check("connect", "connect", (socket.AF_INET, "10.1.2.3", 443, 0, 0, b""))
    learned = learner.learned()
    assert learned["connect"] == ["10.1.2.3:443"]
    # ... and that grant (beyond loopback) is what lets the next run look the name up.
    again = build(["--allow-net=10.1.2.3:443"], tmp_path)
    assert again.check("getaddrinfo", "resolve", NAME) is None


class Recorder:
    def __init__(self) -> None:
        self.asked: list[object] = []

    def getaddrinfo(self, host: object, *args: object) -> list:
        self.asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.8.7", 80))]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """The host's resolver replaced by one that records the names it is asked (nothing leaves the machine)."""
    rec = Recorder()
    monkeypatch.setattr(host_sockets, "sk", rec)
    return rec


def test_host_refuses_a_lookup_the_policy_denies(tmp_path: Path, resolver: Recorder) -> None:
    """An enclave that skips its own check still cannot make the host resolve the name."""
    host = Host(build([], tmp_path))
    entry = host.entries[GETADDRINFO]
    with pytest.raises(OSError) as info:
        host.perform(entry, (NAME, "80", 0, 0, 0, 0, False, False))
    assert info.value.errno == errno.EACCES
    assert f"no permission to resolve {NAME}" in str(info.value)
    assert resolver.asked == []
    host.perform(entry, ("127.0.0.1", "80", 0, 0, 0, 0, False, False))
    assert resolver.asked == ["127.0.0.1"]
    # Negative control: the same request to a host without that check reaches the resolver.
    open_host = Host(ALLOW_ALL)
    open_host.perform(open_host.entries[GETADDRINFO], (NAME, "80", 0, 0, 0, 0, False, False))
    assert resolver.asked == ["127.0.0.1", NAME]


PROGRAM = f"""
import socket
print(sorted({{a[4][0] for a in socket.getaddrinfo("127.0.0.1", 80)}}))
print(sorted({{a[4][0] for a in socket.getaddrinfo("localhost", 80, socket.AF_INET)}}))
for call in (lambda: socket.getaddrinfo({NAME!r}, 80), lambda: socket.create_connection(({NAME!r}, 80), 1),
             lambda: socket.gethostbyname({NAME!r}), lambda: socket.create_connection(("10.255.255.1", 80), 1)):
    try:
        call()
    except OSError as e:
        print(type(e).__name__, e.errno, e)
"""


def test_a_name_lookup_is_denied_inside_like_a_connect(tmp_path: Path, backend: str) -> None:
    r = run_shim(["-c", PROGRAM], backend=backend, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[:2] == ["['127.0.0.1']", "['127.0.0.1']"]
    lookup = f"PolicyDenied 13 posix_shim: getaddrinfo('{NAME}') denied: no permission to resolve {NAME} " \
             "(allow with --allow-net)"
    assert lines[2:5] == [lookup] * 3
    assert lines[5] == "PolicyDenied 13 posix_shim: connect('10.255.255.1:80') denied: no permission to connect " \
                       "to 10.255.255.1:80 (allow with --allow-net=10.255.255.1:80)"
    # The same shape: call, quoted resource, "denied: no permission to VERB RESOURCE (allow with --allow-net".
    shape = re.compile(r"posix_shim: (\w+)\('([^']+)'\) denied: no permission to (?:connect to|resolve) \2 "
                       r"\(allow with --allow-net")
    assert all(shape.search(line) for line in lines[2:6])
