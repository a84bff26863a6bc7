"""The per-call facts of the table and what is derived from them (issue 19).

EINTR retry, the host's path resolution and the enclave's fd translation are facts of each row of
ocall_bridge/calls.py; the stub, the dispatcher and the fd table derive their behaviour from them.  Each test
shows the derived behaviour and, where it is a defence, the same attack succeeding once it is switched off.
"""

from __future__ import annotations

import errno
import os
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_files import _both, _same

from enclave_libc.fdtable import FdTable, OpenFile, fd_stubs
from ocall_bridge import calls as K
from ocall_bridge.client import OcallClient
from ocall_bridge.errors import TableError
from ocall_bridge.host import confine
from ocall_bridge.host.runtime import Host
from ocall_bridge.types import data, flag, path
from ocall_bridge.wire import CODECS, encode_error
from posix_shim.policy import build

# -- EINTR: retried by the stub unless the row says not -----------------------------------------------------


class _Interrupting:
    """A transport whose host answers EINTR `times` times, then succeeds."""

    name = "fake"

    def __init__(self, times: int) -> None:
        self.times, self.sent = times, 0

    def roundtrip(self, frame: bytes, seq: int) -> bytes:
        self.sent += 1
        number = frame[6] | frame[7] << 8
        if self.times:
            self.times -= 1
            return encode_error(number, seq, errno.EINTR)
        return CODECS[number].pack_result(seq, None)

    def close(self) -> None:
        pass


def test_the_rows_that_are_not_retried_on_eintr_say_so() -> None:
    assert {c.name for c in K.CALLS if not c.retry_eintr} == {"close", "connect", "poll", "sleep"}


def test_eintr_is_retried_or_shown_as_the_row_says() -> None:
    transport = _Interrupting(2)
    OcallClient(transport).stubs.fsync(5)  # PEP 475: retried (the signal handlers ran in between)
    assert transport.sent == 3
    transport = _Interrupting(1)
    with pytest.raises(InterruptedError):
        OcallClient(transport).stubs.close(5)  # never retried: the descriptor may already be gone
    assert transport.sent == 1


# -- paths: how the host resolves each, checked by the table ----------------------------------------------------


def _row(**kw: Any) -> K.Call:
    base = {"params": [path(), flag("follow"), data("value")], "resources": [("path", "write")],
            "paths": {"path": K.OBJECT_OR_ENTRY}}
    base.update(kw)
    return K.call("example", 999, "files", base["params"], [], K.PATH_WRITE, resources=base["resources"],
                  paths=base["paths"])


@pytest.mark.parametrize("case, message", [
    ({"paths": {}}, "must be exactly the path parameters with a resource"),
    ({"paths": {"path": K.ENTRY, "value": K.ENTRY}}, "must be exactly the path parameters with a resource"),
    ({"paths": {"path": K.Resolve("beneath")}}, "resolved as 'beneath'"),
    ({"paths": {"path": K.Resolve("object", follow="value", unfollowed="entry")}}, "which is no flag parameter"),
    ({"paths": {"path": K.Resolve("object", follow="follow")}}, "follow and unfollowed go together"),
])
def test_a_path_the_host_touches_must_say_how_it_is_resolved(case: dict, message: str) -> None:
    K.check_table([_row()])  # the well-formed row passes
    with pytest.raises(TableError, match=message):
        K.check_table([_row(**case)])


def test_no_host_files_function_confines_a_path_itself() -> None:
    """The one place is the dispatcher (confine.run_resolved); only open, whose flags decide, resolves its own."""
    import inspect

    from ocall_bridge.host import files

    confining = [name for name, fn in vars(files).items() if inspect.isfunction(fn) and fn.__module__ == files.__name__
                 and "confiner_for" in inspect.getsource(fn)]
    assert confining == ["open"]
    assert [c.name for c in K.CALLS for _, how in c.paths if how.at == "self"] == ["open"]


@pytest.fixture
def escape(tmp_path: Path) -> dict[str, Any]:
    root, out = tmp_path / "root", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    (root / "f").write_bytes(b"inside")
    os.symlink(out, root / "dirlink")  # inside the root, leading out of it
    host = Host(build([f"--allow-read={root}", f"--allow-write={root}"], cwd=root))
    entry = host.entries[K.BY_NAME["rename"].number]
    return {"host": host, "entry": entry, "args": (os.fsencode(root / "f"), os.fsencode(root / "dirlink" / "f")),
            "root": root, "out": out}


def test_the_dispatcher_resolves_paths_beneath_their_root(escape: dict[str, Any]) -> None:
    # The policy's string check passes (both names are under the root); the kernel's resolution refuses.
    with pytest.raises(PermissionError):
        escape["host"].perform(escape["entry"], escape["args"])
    assert (escape["root"] / "f").exists() and not (escape["out"] / "f").exists()


def test_negative_control_without_resolution_the_rename_escapes(escape: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(confine, "confiner_for", lambda access: None)  # exactly the resolution, switched off
    escape["host"].perform(escape["entry"], escape["args"])
    assert (escape["out"] / "f").read_bytes() == b"inside"


# -- fds: translated by the fd table's stubs, derived from the rows' handle parameters ---------------------------


def test_the_fd_stubs_translate_exactly_the_handle_parameters() -> None:
    seen: list[tuple] = []
    ocall = SimpleNamespace(**{c.name: (lambda name: lambda *a: seen.append((name, a)))(c.name)
                               for c in K.CALLS if not c.inside})
    table = FdTable(lambda handle: None)
    fd = table.add(OpenFile(77, "file"))
    other = table.add(OpenFile(88, "file"))
    stubs = fd_stubs(ocall, table)
    assert set(vars(stubs)) == {c.name for c in K.CALLS if not c.inside and c.fd_params}
    stubs.pread(fd, 10, 3)
    stubs.sendfile(fd, other, -1, 5)
    assert seen == [("pread", (77, 10, 3)), ("sendfile", (77, 88, -1, 5))]
    with pytest.raises(OSError) as bad:
        stubs.fsync(fd + 10)
    assert bad.value.errno == errno.EBADF and len(seen) == 2  # nothing left the enclave


def test_a_bad_fd_fails_in_the_native_order(backend: str, tmp_path: Path) -> None:
    """EBADF before the other argument errors, except where the kernel checks the offset first (pread/pwrite)."""
    code = textwrap.dedent("""
        import errno, os
        for label, call in [("pwrite", lambda: os.pwrite(99, b"x", -1)), ("lseek", lambda: os.lseek(99, 0, 99)),
                            ("sendfile", lambda: os.sendfile(99, 98, -1, 1)), ("fstat", lambda: os.fstat(99)),
                            ("fallocate", lambda: os.posix_fallocate(99, -1, 0)),
                            ("getxattr", lambda: os.getxattr(99, "user.x")), ("fsync", lambda: os.fsync(99)),
                            ("terminal", lambda: os.get_terminal_size(99)), ("fchmod", lambda: os.fchmod(99, 0)),
                            ("tcgetpgrp", lambda: os.tcgetpgrp(99)), ("pread", lambda: os.pread(99, 1, -1))]:
            try:
                call()
            except OSError as e:
                print(label, errno.errorcode[e.errno], flush=True)
    """)
    inside, native = _both(tmp_path, backend, code)
    _same(inside, native, backend)
    assert inside.stdout.count(b"EBADF") == 9 and b"pwrite EINVAL" in inside.stdout


def test_a_row_with_paths_cannot_have_an_in_place_host_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-place bulk route skips the dispatcher's path resolution: a `<name>_into` for a path row (getxattr
    answers a count-bounded byte string, as read does) would be served unconfined, so the host refuses to start."""
    from ocall_bridge.errors import TableError
    from ocall_bridge.host import files as host_files
    from ocall_bridge.host.runtime import Host

    Host().close()  # read_into and pread_into, on handle rows: accepted
    monkeypatch.setattr(host_files, "getxattr_into", lambda *args: 0, raising=False)
    with pytest.raises(TableError, match="getxattr: a row with path parameters"):
        Host()
