"""A hostile enclave: frames the enclave runtime would never send, straight to `Host.serve`.

The enclave's own guard (enclave_libc/runtime.py) denies a resource before the request leaves, so an end-to-end
test never reaches the host's checks.  Here the client is a test that encodes frames itself: every host-side
check is exercised on its own, and each test has a negative control that switches off exactly that check and
shows the same frame then does what the check is there to stop.

* the policy re-check, for every resource parameter of every row of the table that names one (iterated, not
  listed by hand);
* handle ownership: raw host descriptors, the stdio numbers, another enclave's handles -> EBADF;
* write rights of the fd-based metadata calls (fchmod, futime, fchown) under a read-only grant;
* unbounded lengths, and frames of the wrong kind, version or call.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocall_bridge import types as T
from ocall_bridge.access import Access
from ocall_bridge.calls import CALLS, Call
from ocall_bridge.host import runtime
from ocall_bridge.host import sockets as host_sockets
from ocall_bridge.host.handles import Handle, HandleTable
from ocall_bridge.host.runtime import Host
from ocall_bridge.wire import ANSWER, CODECS_BY_NAME, ECALL, HEADER, REQUEST, WIRE_VERSION, decode_answer
from posix_shim.policy import parse

_seq = iter(range(1, 1 << 30))


def ask(host: Host, name: str, *args: Any) -> tuple[int, tuple]:
    """(errno, results) of one request the test encodes itself."""
    codec = CODECS_BY_NAME[name]
    seq = next(_seq)
    answer = host.serve(codec.pack_request(seq, list(args)))
    assert answer is not None, name
    return decode_answer(bytes(answer), codec, seq)


# -- the policy re-check, row by row ---------------------------------------------------------------------------

RESOURCE_ROWS: list[tuple[Call, str, str]] = [(c, p, k) for c in CALLS if not c.inside for p, k in c.resources]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A root the policy grants (read and write), a folder inside it the policy denies, no network at all; a
    listening TCP socket and a UDP socket on loopback that a denied connect or sendto would reach."""
    root = tmp_path / "root"
    denied = root / "denied"
    (root / "ok").mkdir(parents=True)
    denied.mkdir()
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    policy = parse([f"--allow-read={root}", f"--allow-write={root}", f"--deny-read={denied}",
                    f"--deny-write={denied}"], cwd=str(root))
    yield {"root": root, "denied": denied, "policy": policy, "tcp": tcp.getsockname()[1],
           "udp": udp.getsockname()[1]}
    tcp.close()
    udp.close()


XATTR = b"user.posix_shim"  # an extended attribute name the xattr rows use


def _target(c: Call, param: str, where: Path) -> bytes:
    """A path under `where` that makes this parameter of this call succeed when nothing refuses it."""
    name = c.name
    where.mkdir(parents=True, exist_ok=True)
    (where / "f").write_bytes(b"data")
    if name.endswith("xattr"):  # get/remove need the attribute to be there
        os.setxattr(where / "f", XATTR, b"v")
    if not (where / "d").exists():
        (where / "d").mkdir()
    if not (where / "l").is_symlink():
        os.symlink("f", where / "l")
    if name == "readlink":
        return os.fsencode(where / "l")
    if name == "rmdir":
        return os.fsencode(where / "d")
    if name in ("mkdir", "mkfifo") or param in ("dst", "linkpath"):
        return os.fsencode(where / "new")
    return os.fsencode(where / "f")


def _request(host: Host, c: Call, attacked: str, world: dict[str, Any]) -> list[Any]:
    """Arguments for `c` whose `attacked` parameter names a denied resource and every other one an allowed one."""
    args: list[Any] = []
    resources = dict(c.resources)
    for f in c.params:
        t = f.type
        if isinstance(t, T.Path):
            base = world["denied"] if f.name == attacked else world["root"] / "ok"
            args.append(_target(c, f.name, base / c.name) if f.name in resources else b"/elsewhere")
        elif isinstance(t, T.Record):  # a SOCKADDR: TCP for bind/connect, UDP for sendto/sendmsg
            udp = c.name in ("sendto", "sendmsg")
            port = 0 if resources.get(f.name) == "bind" else world["udp" if udp else "tcp"]
            args.append((socket.AF_INET, "127.0.0.1", port, 0, 0, b""))
        elif isinstance(t, T.Text) and resources.get(f.name) == "resolve":
            args.append("a-name.invalid" if f.name == attacked else "127.0.0.1")  # a name is a network action
        elif isinstance(t, T.Text):
            args.append("80")  # a numeric service
        elif isinstance(t, T.List):
            args.append([])
        elif isinstance(t, T.Int) and t.role == "handle":
            kind = socket.SOCK_DGRAM if c.name in ("sendto", "sendmsg") else socket.SOCK_STREAM
            err, (fd,) = ask(host, "socket", socket.AF_INET, kind, 0)
            assert err == 0
            args.append(fd)
        elif isinstance(t, T.Bytes):
            args.append(XATTR if f.name == "name" else b"x")
        elif isinstance(t, T.Bool):
            args.append(f.name == "follow")
        elif f.name in ("uid", "gid"):
            args.append(-1)
        elif f.name == "size":  # getxattr: room for the value
            args.append(128)
        elif f.name == "mode":
            args.append(0o600 if c.name not in ("access",) else os.F_OK)
        else:
            args.append(t.lo if isinstance(t, T.Int) and t.lo is not None and t.lo > 0 else 0)
    return args


class _LocalResolver:
    """Stands in for the socket module in ocall_bridge.host.sockets: resolves every name to loopback."""

    def getaddrinfo(self, *args: Any) -> list:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))]


def _id(row: tuple[Call, str, str]) -> str:
    return f"{row[0].name}.{row[1]}"


@pytest.mark.parametrize("row", RESOURCE_ROWS, ids=_id)
def test_the_host_rechecks_the_policy_on_every_resource_parameter(row: tuple[Call, str, str],
                                                                  world: dict[str, Any],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    c, param, _ = row
    if c.name == "getaddrinfo":  # the host's resolver answers from here: nothing leaves the machine
        monkeypatch.setattr(host_sockets, "sk", _LocalResolver())
    host = Host(world["policy"])
    err, _ = ask(host, c.name, *_request(host, c, param, world))
    assert err == errno.EACCES, (c.name, param, errno.errorcode.get(err, err))
    # Negative control: without Host._check_resource the very same frame does what the policy forbids.
    monkeypatch.setattr(Host, "_check_resource", lambda *a: None)
    host = Host(world["policy"])
    err, _ = ask(host, c.name, *_request(host, c, param, world))
    assert err == 0, (c.name, param, errno.errorcode.get(err, err))


def test_every_row_with_a_resource_is_covered() -> None:
    names = {c.name for c, _, _ in RESOURCE_ROWS}
    assert {"open", "stat", "rename", "bind", "connect", "sendto", "mkfifo"} <= names
    assert len(RESOURCE_ROWS) == sum(len(c.resources) for c in CALLS if not c.inside)


def test_a_relative_path_is_refused_by_the_host(tmp_path: Path) -> None:
    host = Host()
    err, _ = ask(host, "stat", b"relative/path")
    assert err == errno.EINVAL


# -- handle ownership --------------------------------------------------------------------------------------------


def test_raw_host_descriptors_stdio_and_other_enclaves_handles_are_ebadf(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret")
    raw = os.open(secret, os.O_RDONLY)  # a descriptor of the host process the enclave was never given
    a, b = Host(), Host()
    try:
        err, (mine,) = ask(a, "open", os.fsencode(secret), os.O_RDONLY, 0)
        assert err == 0
        while len(b.handles) <= mine:  # b issued numbers up to and past a's, all its own
            ask(b, "pipe", 0)
        assert raw not in a.handles._handles
        for number in (raw, 0, 1, 2, mine + 1000):
            assert ask(a, "pread", number, 100, 0)[0] == errno.EBADF, number
        # Another enclave's handle: a's number names b's own pipe in b (never a's file), and nothing in a host
        # that never issued it.
        assert ask(b, "pread", mine, 100, 0)[0] == errno.ESPIPE
        fresh = Host()
        assert ask(fresh, "pread", mine, 100, 0)[0] == errno.EBADF
        assert ask(a, "pread", mine, 100, 0) == (0, (b"host secret",))
    finally:
        os.close(raw)
        a.close()
        b.close()


def test_negative_control_a_table_that_takes_any_number_hands_over_host_descriptors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret")
    raw = os.open(secret, os.O_RDONLY)
    original = HandleTable.get

    def lenient(self: HandleTable, number: int) -> Handle:
        try:
            return original(self, number)
        except OSError:
            return Handle(number, number, "file")  # the check removed: any number is a host descriptor

    monkeypatch.setattr(HandleTable, "get", lenient)
    try:
        assert ask(Host(), "pread", raw, 100, 0) == (0, (b"host secret",))
    finally:
        os.close(raw)


# -- write rights on the fd-based metadata calls --------------------------------------------------------------


@pytest.fixture
def read_only(tmp_path: Path) -> tuple[Host, Path, int]:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    f.chmod(0o644)
    os.utime(f, ns=(10**18, 10**18))
    elsewhere = tmp_path / "cwd"  # the defaults grant writes to the current folder: let it be another one
    elsewhere.mkdir()
    host = Host(parse([f"--allow-read={f}"], cwd=str(elsewhere)))
    err, (handle,) = ask(host, "open", os.fsencode(f), os.O_RDONLY, 0)
    assert err == 0
    return host, f, handle


METADATA = [("fchmod", (0o777,), "chmod", (0o777, True)),
            ("futime", (0, 0, False), "utime", (0, 0, False, True)),
            ("fchown", (-1, -1), "chown", (-1, -1, True))]


@pytest.mark.parametrize("fd_call,fd_args,path_call,path_args", METADATA, ids=[m[0] for m in METADATA])
def test_fd_metadata_calls_need_the_write_grant_their_path_calls_need(
        read_only: tuple[Host, Path, int], fd_call: str, fd_args: tuple, path_call: str, path_args: tuple) -> None:
    host, f, handle = read_only
    before = os.stat(f)
    assert ask(host, path_call, os.fsencode(f), *path_args)[0] == errno.EACCES
    assert ask(host, fd_call, handle, *fd_args)[0] == errno.EACCES
    after = os.stat(f)
    assert (stat.S_IMODE(after.st_mode), after.st_mtime_ns) == (stat.S_IMODE(before.st_mode), before.st_mtime_ns)


def test_negative_control_without_the_fd_write_check_fchmod_and_futime_change_the_file(
        read_only: tuple[Host, Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    from ocall_bridge.host import files

    host, f, handle = read_only
    monkeypatch.setattr(files, "_may_change", lambda *a: None)
    assert ask(host, "fchmod", handle, 0o777)[0] == 0
    assert ask(host, "futime", handle, 0, 0, False)[0] == 0
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o777 and os.stat(f).st_mtime_ns == 0


def test_fd_metadata_calls_still_work_with_the_grant(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    host = Host(parse([f"--allow-read={tmp_path}", f"--allow-write={tmp_path}"], cwd=str(tmp_path)))
    err, (handle,) = ask(host, "open", os.fsencode(f), os.O_RDONLY, 0)
    assert ask(host, "fchmod", handle, 0o600) == (0, ())
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    err, (r, w) = ask(host, "pipe", 0)
    assert ask(host, "fchmod", r, 0o600) == (0, ())  # the enclave's own pipe


# -- lengths, kinds, versions, calls ---------------------------------------------------------------------------


def test_unbounded_lengths_are_refused_before_anything_is_done(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host()
    err, (r, w) = ask(host, "pipe", 0)
    assert ask(host, "write", w, b"abc") == (0, (3,))  # so that a read the checks let through never blocks
    codec = CODECS_BY_NAME["read"]
    frame = bytearray(codec.pack_request(5, [r, 10]))
    frame[-8:] = (T.MAX_DATA + 1).to_bytes(8, "little")  # count one past the limit
    assert decode_answer(host.serve(bytes(frame)), codec, 5) == (errno.EINVAL, ())
    # A variable field that claims more than the frame holds, and one past its type's maximum.
    codec = CODECS_BY_NAME["write"]
    good = codec.pack_request(6, [w, b"abc"])
    claims = good[:-7] + (0xFFFFFFF0).to_bytes(4, "little") + good[-3:]
    assert decode_answer(host.serve(claims), codec, 6) == (errno.EPROTO, ())
    assert ask(host, "getdents", r, 1025, True)[0] == errno.EINVAL  # max is 1..1024
    # Negative control: without the request checks the oversized count reaches the host function.
    seen = []
    entry = host.entries[CODECS_BY_NAME["read"].number]
    monkeypatch.setattr(entry, "request_checks", ())
    monkeypatch.setattr(entry, "fn", lambda h, handle, count: seen.append(count) or b"")
    monkeypatch.setattr(entry, "fn_into", None)
    codec = CODECS_BY_NAME["read"]
    assert decode_answer(host.serve(bytes(frame)), codec, 5) == (0, (b"",))
    assert seen == [T.MAX_DATA + 1]


def test_a_call_the_policy_does_not_enable_is_enosys_on_the_host(tmp_path: Path) -> None:
    class NoStat(Access):
        def call_allowed(self, name: str) -> bool:
            return name != "stat"

    assert ask(Host(NoStat()), "stat", os.fsencode(tmp_path)) == (errno.ENOSYS, ())
    assert ask(Host(Access()), "stat", os.fsencode(tmp_path))[0] == 0  # the control: the same frame, enabled


@pytest.mark.parametrize("kind", [ANSWER, ECALL, 0, 9])
def test_frames_of_another_kind_are_not_served(kind: int) -> None:
    host = Host()
    codec = CODECS_BY_NAME["getids"]
    frame = bytearray(codec.pack_request(9, []))
    frame[5] = kind
    answer = host.serve(bytes(frame))
    assert answer is not None and decode_answer(answer, codec, 9) == (errno.EPROTO, ())


def test_wrong_version_errno_or_call_and_a_short_frame_are_not_served() -> None:
    host = Host()
    codec = CODECS_BY_NAME["getids"]
    good = codec.pack_request(9, [])
    assert decode_answer(host.serve(good), codec, 9)[0] == 0
    bad_version = bytearray(good)
    bad_version[4] = WIRE_VERSION + 1
    assert decode_answer(host.serve(bytes(bad_version)), codec, 9) == (errno.EPROTO, ())
    with_errno = HEADER.pack(len(good), WIRE_VERSION, REQUEST, codec.number, 9, 5) + good[16:]
    assert decode_answer(host.serve(with_errno), codec, 9) == (errno.EPROTO, ())
    unknown = HEADER.pack(16, WIRE_VERSION, REQUEST, 9999, 9, 0)
    assert host.serve(unknown) is None  # no call to answer for
    assert host.serve(good[:10]) is None
    # The answer carries the request's own sequence number, whatever it is.
    for seq in (0, 1, 0xFFFFFFFF):
        answer = host.serve(codec.pack_request(seq, []))
        assert HEADER.unpack_from(answer, 0)[4] == seq


def test_a_host_function_bug_is_an_eio_answer_not_a_dead_host(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host()
    entry = host.entries[CODECS_BY_NAME["getids"].number]
    monkeypatch.setattr(entry, "fn", lambda h: 1 / 0)
    assert ask(host, "getids") == (errno.EIO, ())
    assert runtime.log.name == "posix_shim.host"
