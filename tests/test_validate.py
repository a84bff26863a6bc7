"""The plausibility relations of calls.RULES, one by one, against a scripted host, each with its negative control.

A scripted transport answers each call with well-formed frames the test chooses, so every relation is shown
holding (the lie is refused: HostViolation, EIO, logged in client.violations) and shown to be what holds: with
exactly that check switched off (validate._STATELESS[kind] or one Plausibility method replaced by a no-op) the
very same lie reaches the caller.  The end-to-end versions, with the lies told by `--inject` on both backends,
are in test_plausible.py.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from collections.abc import Callable
from typing import Any

import pytest

from ocall_bridge import calls as K
from ocall_bridge import validate
from ocall_bridge.client import OcallClient
from ocall_bridge.errors import HostViolation
from ocall_bridge.wire import CODECS_BY_NAME


class Scripted:
    """A host that answers every call with the next result list `answer(name, args)` gives."""

    name = "scripted"

    def __init__(self, answer: Callable[[str, tuple], list]) -> None:
        self.answer = answer

    def roundtrip(self, frame: bytes, seq: int) -> bytes:
        number = frame[6] | frame[7] << 8
        codec = next(c for c in CODECS_BY_NAME.values() if c.number == number)
        from ocall_bridge.wire import decode_request

        _, _, args = decode_request(frame)
        return codec.pack_answer(seq, self.answer(codec.call.name, args))

    def close(self) -> None:
        pass


def client_answering(results: dict[str, Any]) -> OcallClient:
    """A client whose host answers `results[name]` (a list, or a function of the request's args)."""
    return OcallClient(Scripted(lambda name, args: (results[name](args) if callable(results[name])
                                                    else results[name])))


STAT = dict(mode=stat.S_IFREG | 0o644, ino=1, dev=1, nlink=1, uid=0, gid=0, size=10, atime_ns=0, mtime_ns=0,
            ctime_ns=0, blksize=4096, blocks=8, rdev=0)


def st(**changes: int) -> tuple:
    values = dict(STAT, **changes)
    return tuple(values[f.name] for f in K.STAT.fields)


def switch_off(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The negative control: the relation `kind` alone is no longer checked."""
    if kind in validate.STATEFUL:
        method = {"fresh": "_fresh", "listing": "_listing", "clock": "_clock", "slept": "_slept",
                  "stable": "_stable"}[kind]
        if kind == "fresh":
            monkeypatch.setattr(validate.Plausibility, method, lambda self, c: lambda a, v: None)
        else:
            monkeypatch.setattr(validate.Plausibility, method, lambda self, a, v: None)
    else:
        monkeypatch.setitem(validate._STATELESS, kind, lambda c: lambda a, v: None)


# (rule kind, call, args, lying answer, message fragment): one stateless lie per relation.
STATELESS_LIES = [
    ("blksize", "fstat", (5,), [st(blksize=2**40)], "st.blksize 1099511627776 is not a power of two"),
    ("blksize", "stat", (b"/x",), [st(blksize=3000)], "is not a power of two"),
    ("blksize", "lstat", (b"/x",), [st(blksize=256)], "is not a power of two"),
    ("filetype", "stat", (b"/x",), [st(mode=0o644)], "has no valid file type"),
    ("filetype", "fstat", (5,), [st(mode=0o170644)], "has no valid file type"),
    ("filetype", "stat", (b"/x",), [st(mode=stat.S_IFLNK | 0o777)], "stat follows symlinks"),
    ("nlink", "stat", (b"/x",), [st(nlink=0)], "st.nlink is 0"),
    ("nlink", "lstat", (b"/x",), [st(nlink=0)], "st.nlink is 0"),
    ("statvfs", "statvfs", (b"/x",), [(4096, 4096, 10, 11, 5, 100, 50, 50, 0, 255, 1)], "free / 5 available blocks"),
    ("statvfs", "fstatvfs", (5,), [(4096, 4096, 10, 5, 5, 100, 101, 50, 0, 255, 1)], "inodes of 100"),
    ("seek", "lseek", (5, 0, os.SEEK_SET), [2**62], "SEEK_SET to 0 answered position 4611686018427387904"),
    ("seek", "lseek", (5, 10, os.SEEK_CUR), [9], "before the offset 10"),
    ("dirent", "getdents", (5, 16, True), [[(b"ok", 8, 1), (b"../x", 8, 2)]], "is not a file name"),
    ("resolver", "getaddrinfo", ("h", "80", socket.AF_INET, 0, 0, 0, False, False),
     [[(socket.AF_INET, 1, 6, "", (socket.AF_INET, f"10.0.0.{i}", 80, 0, 0, b"")) for i in range(65)]],
     "65 resolver answers"),
    ("resolver", "getaddrinfo", ("h", "80", socket.AF_INET, 0, 0, 0, False, False),
     [[(socket.AF_INET6, 1, 6, "", (socket.AF_INET6, "::1", 80, 0, 0, b""))]], "of family 10 for a request"),
    ("resolver", "getaddrinfo", ("h", "80", 0, 0, 0, 0, False, False),
     [[(socket.AF_INET, 1, 6, "", (socket.AF_INET6, "::1", 80, 0, 0, b""))]], "address of family 10 in an answer"),
]


@pytest.mark.parametrize("kind,call,args,lie,message", STATELESS_LIES,
                         ids=[f"{k}-{c}-{i}" for i, (k, c, *_) in enumerate(STATELESS_LIES)])
def test_a_stateless_lie_is_refused_and_believed_without_its_check(kind: str, call: str, args: tuple, lie: list,
                                                                   message: str, monkeypatch: pytest.MonkeyPatch,
                                                                   figures: dict[str, int]) -> None:
    client = client_answering({call: lie})
    with pytest.raises(HostViolation, match=message) as info:
        getattr(client.stubs, call)(*args)
    assert info.value.errno == errno.EIO and len(client.violations) == 1
    switch_off(monkeypatch, kind)
    believed = getattr(client_answering({call: lie}).stubs, call)(*args)
    assert believed == (lie[0] if len(lie) == 1 else tuple(lie))
    figures["relations refused, then believed without their check"] = (
        figures.get("relations refused, then believed without their check", 0) + 1)


def test_honest_answers_pass_every_relation() -> None:
    client = client_answering({
        "fstat": [st(nlink=0)],  # a file unlinked while open: fstat says 0, and that is the truth
        "stat": [st(mode=stat.S_IFDIR | 0o755, nlink=2, blksize=512)],
        "lseek": lambda a: [a[1] if a[2] == os.SEEK_SET else a[1] + 7],
        "statvfs": [(4096, 4096, 10, 5, 5, 0, 0, 0, 0, 255, 1)],
        "getaddrinfo": [[(socket.AF_INET6, 1, 6, "", (socket.AF_INET6, "::1", 80, 0, 0, b""))]],
    })
    assert client.stubs.fstat(5)[K.STAT.fields.index(next(f for f in K.STAT.fields if f.name == "nlink"))] == 0
    client.stubs.stat(b"/d")
    assert client.stubs.lseek(5, 123, os.SEEK_SET) == 123
    assert client.stubs.lseek(5, -3, os.SEEK_END) == 4
    client.stubs.statvfs(b"/")
    assert len(client.stubs.getaddrinfo("h", "80", 0, 0, 0, 0, False, False)) == 1


# -- the relations that remember the run --------------------------------------------------------------------------


def test_a_listing_that_repeats_a_name_or_never_ends_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    page = [(b"a", 8, 1), (b"b", 8, 2)]
    client = client_answering({"getdents": [page]})  # the same page, forever
    assert client.stubs.getdents(5, 16, True) == page
    with pytest.raises(HostViolation, match="directory entry b'a' listed twice"):
        client.stubs.getdents(5, 16, False)
    with pytest.raises(HostViolation, match="listed twice"):
        client_answering({"getdents": [[(b"a", 8, 1), (b"a", 8, 1)]]}).stubs.getdents(5, 16, True)
    # After the end, a listing goes on only after a restart.
    answers = iter([page, [], page, page])
    client = client_answering({"getdents": lambda a: [next(answers)]})
    client.stubs.getdents(6, 16, True)
    assert client.stubs.getdents(6, 16, False) == []
    with pytest.raises(HostViolation, match="goes on after it ended"):
        client.stubs.getdents(6, 16, False)
    assert client.stubs.getdents(6, 16, True) == page  # restarted: a new listing
    # A bounded total: distinct names past MAX_LISTING.
    monkeypatch.setattr(K, "MAX_LISTING", 3)
    counter = iter(range(100))
    client = client_answering({"getdents": lambda a: [[(b"n%d" % next(counter), 8, 1)]]})
    for _ in range(3):
        client.stubs.getdents(7, 1, False)
    with pytest.raises(HostViolation, match="more than 3 names"):
        client.stubs.getdents(7, 1, False)
    # Negative control: without the listing relation the endless listing is believed page after page.
    switch_off(monkeypatch, "listing")
    client = client_answering({"getdents": [page]})
    for _ in range(100):
        assert client.stubs.getdents(5, 16, False) == page


def test_a_handle_aliasing_stdio_or_an_earlier_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_answering({"attach": [3, 4, 5], "open": [4], "pipe": [9, 9]})
    assert client.stubs.attach(1) == (3, 4, 5)
    with pytest.raises(HostViolation, match="handle 4 was issued before"):
        client.stubs.open(b"/x", 0, 0)  # the enclave's own stdout
    with pytest.raises(HostViolation, match="the same handle twice"):
        client.stubs.pipe(0)
    with pytest.raises(HostViolation, match="handle 2 is one the host never issues"):
        client_answering({"open": [2]}).stubs.open(b"/x", 0, 0)
    assert client_answering({"attach": [-1, 4, -1]}).stubs.attach(1) == (-1, 4, -1)  # closed streams
    switch_off(monkeypatch, "fresh")
    client = client_answering({"attach": [3, 4, 5], "open": [4]})
    client.stubs.attach(1)
    assert client.stubs.open(b"/x", 0, 0) == 4


class Clock:
    """The enclave's own counter, advanced by the test."""

    def __init__(self) -> None:
        self.now = 10**12

    def __call__(self) -> int:
        return self.now


def timed_client(answers: dict[str, Any], counter: Clock) -> OcallClient:
    client = client_answering(answers)
    client.plausible.counter = counter
    return client


RT, MONO = time.CLOCK_REALTIME, time.CLOCK_MONOTONIC


def test_clocks_are_held_to_the_enclaves_own_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Clock()
    host = {"rt": 1_700_000_000 * 10**9, "mono": 5 * 10**12}
    client = timed_client({"clock_gettime": lambda a: [host["rt" if a[0] == RT else "mono"]]}, counter)
    assert client.stubs.clock_gettime(RT) == host["rt"]
    assert client.stubs.clock_gettime(MONO) == host["mono"]
    # Ten seconds pass for the counter and for the host: believed.
    counter.now += 10 * 10**9
    host["rt"] += 10 * 10**9
    host["mono"] += 10 * 10**9
    client.stubs.clock_gettime(RT)
    client.stubs.clock_gettime(MONO)
    # A century forward on the monotonic clock, a year back and forward on the realtime clock: refused.
    host["mono"] += 100 * 365 * 86_400 * 10**9
    with pytest.raises(HostViolation, match="ahead of the enclave's own counter"):
        client.stubs.clock_gettime(MONO)
    host["rt"] -= 365 * 86_400 * 10**9
    with pytest.raises(HostViolation, match="behind the enclave's own counter"):
        client.stubs.clock_gettime(RT)
    host["rt"] += 2 * 365 * 86_400 * 10**9
    with pytest.raises(HostViolation, match="ahead of the enclave's own counter"):
        client.stubs.clock_gettime(RT)
    # A first realtime answer outside 2000..2200, a first monotonic one over a century.
    with pytest.raises(HostViolation, match="outside 2000..2200"):
        timed_client({"clock_gettime": [-(2**62)]}, Clock()).stubs.clock_gettime(RT)
    with pytest.raises(HostViolation, match="more than a century since boot"):
        timed_client({"clock_gettime": [2**62]}, Clock()).stubs.clock_gettime(MONO)
    # A monotonic clock may fall behind the counter (it stops while the machine sleeps), never run ahead.
    counter.now += 60 * 10**9
    host["mono"] -= 100 * 365 * 86_400 * 10**9
    client.stubs.clock_gettime(MONO)
    # Negative control: without the clock relation the century jump is believed.
    switch_off(monkeypatch, "clock")
    client = timed_client({"clock_gettime": lambda a: [host["mono"]]}, counter)
    client.stubs.clock_gettime(MONO)
    host["mono"] += 100 * 365 * 86_400 * 10**9
    assert client.stubs.clock_gettime(MONO) == host["mono"]


def test_the_clock_relation_takes_slow_drift_and_scheduling_delays() -> None:
    counter = Clock()
    host = {"rt": 1_700_000_000 * 10**9}
    client = timed_client({"clock_gettime": lambda a: [host["rt"]]}, counter)
    client.stubs.clock_gettime(RT)
    for _ in range(100):  # an hour in which the host's clock runs 500 ppm fast (an NTP slew)
        counter.now += 36 * 10**9
        host["rt"] += 36 * 10**9 + 18 * 10**6
        client.stubs.clock_gettime(RT)


def test_sleeps_are_held_to_the_request_and_to_the_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Clock()

    def sleep(a: tuple) -> list:
        counter.now += a[0]  # the counter sees the time really pass
        return [claims.pop(0)]

    claims = [50_000_000, 365 * 86_400 * 10**9, 10_000_000]
    client = timed_client({"sleep": sleep}, counter)
    assert client.stubs.sleep(50_000_000) == 50_000_000
    with pytest.raises(HostViolation, match="the enclave's own counter saw 50000000 ns pass"):
        client.stubs.sleep(50_000_000)
    with pytest.raises(HostViolation, match="claims to have lasted 10000000 ns"):
        client.stubs.sleep(50_000_000)

    def early(a: tuple) -> list:
        counter.now += a[0] // 2  # back after half the time, claiming all of it
        return [a[0]]

    with pytest.raises(HostViolation, match="came back after 25000000 ns"):
        timed_client({"sleep": early}, counter).stubs.sleep(50_000_000)
    switch_off(monkeypatch, "slept")
    claims[:] = [365 * 86_400 * 10**9]
    assert timed_client({"sleep": sleep}, counter).stubs.sleep(50_000_000) == 365 * 86_400 * 10**9


def test_identity_is_stable_and_in_range(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [[100, 1, 1000, 1000, 1000, 1000], [100, 1, 0, 0, 0, 0]]
    client = client_answering({"getids": lambda a: ids.pop(0)})
    assert client.stubs.getids() == (100, 1, 1000, 1000, 1000, 1000)
    with pytest.raises(HostViolation, match="differs from"):
        client.stubs.getids()
    with pytest.raises(HostViolation, match="pid=4611686018427387904 is above 4194304"):
        client_answering({"getids": [2**62, 1, 0, 0, 0, 0]}).stubs.getids()
    with pytest.raises(HostViolation, match="its own parent"):
        client_answering({"getids": [7, 7, 0, 0, 0, 0]}).stubs.getids()
    with pytest.raises(HostViolation, match="columns=2147483647 is above 10000"):
        client_answering({"terminal_size": [2**31 - 1, 24]}).stubs.terminal_size(5)
    switch_off(monkeypatch, "stable")
    ids = [[100, 1, 1000, 1000, 1000, 1000], [100, 1, 0, 0, 0, 0]]
    client = client_answering({"getids": lambda a: ids.pop(0)})
    client.stubs.getids()
    assert client.stubs.getids() == (100, 1, 0, 0, 0, 0)


def test_ranges_bounds_and_errno_sets_of_the_table() -> None:
    """The checks every row gets from its fields (the mutation run's controls switch each off)."""
    with pytest.raises(HostViolation, match="position=-1 is below 0"):
        client_answering({"lseek": [-1]}).stubs.lseek(5, 0, os.SEEK_CUR)
    with pytest.raises(HostViolation, match="ns=0 is below 1"):
        client_answering({"clock_getres": [0]}).stubs.clock_getres(RT)
    with pytest.raises(HostViolation, match="data is 5, more than count=4"):
        client_answering({"read": [b"12345"]}).stubs.read(5, 4)
    with pytest.raises(HostViolation, match="written is 4, more than the 3 bytes of data"):
        client_answering({"write": [4]}).stubs.write(5, b"abc")
    with pytest.raises(HostViolation, match="ready is 2, more than the 1 bytes of fds"):
        client_answering({"poll": [[(0, 1), (0, 1)]]}).stubs.poll([(5, 1)], 0)

    class Failing(Scripted):
        def roundtrip(self, frame: bytes, seq: int) -> bytes:
            from ocall_bridge.wire import encode_error

            return encode_error(frame[6] | frame[7] << 8, seq, errno.ECHILD)

    with pytest.raises(HostViolation, match="errno ECHILD is not one read can return"):
        OcallClient(Failing(lambda n, a: [])).stubs.read(5, 4)
    assert client_answering({"read": [b"1234"]}).stubs.read(5, 4) == b"1234"


def test_every_rule_kind_is_proved_here() -> None:
    proved = {k for k, *_ in STATELESS_LIES} | {"listing", "fresh", "clock", "slept", "stable"}
    assert proved == {r.kind for r in K.RULES}
