"""The fd table's one-fd-space rules, against a fake backend: what C code may be handed, and what is never replaced."""

from __future__ import annotations

import io
import os

import pytest

from enclave_libc.fdtable import FdTable, OpenFile


class FakeNative:
    """Each handle's descriptor is a fresh pipe end (a real, distinct open file); `reserved` names the host's."""

    def __init__(self, give: bool = True) -> None:
        self.give = give
        self.host_fds: set[int] = set()
        self.keep: list[int] = []

    def fd_for(self, handle: int) -> int | None:
        if not self.give:
            return None
        r, w = os.pipe()
        self.keep.append(r)
        return w

    def reserved(self, fd: int) -> bool:
        return fd in self.host_fds

    @staticmethod
    def same_file(a: int, b: int) -> bool:
        return os.fstat(a).st_ino == os.fstat(b).st_ino


def _table(native: FakeNative) -> tuple[FdTable, list[int]]:
    closed: list[int] = []
    return FdTable(closed.append, native), closed


def test_an_enclave_fd_is_the_real_descriptor_and_dup_shares_the_file() -> None:
    native = FakeNative()
    table, closed = _table(native)
    fd = table.add(OpenFile(7, "pipe"))
    assert table.fileno(fd) == fd and os.fstat(fd)  # a real descriptor with that very number
    copy = table.add(table.get(fd))
    assert copy != fd and os.fstat(copy).st_ino == os.fstat(fd).st_ino
    table.close(fd)
    with pytest.raises(OSError):
        os.fstat(fd)  # closed for real
    assert closed == []  # the handle lives on in the copy
    table.close(copy)
    assert closed == [7]


def test_a_virtual_entry_refuses_fileno_rather_than_name_another_file() -> None:
    table, _ = _table(FakeNative(give=False))
    fd = table.add(OpenFile(9, "file"))
    with pytest.raises(io.UnsupportedOperation, match="no real descriptor"):
        table.fileno(fd)
    # And its number is not a real descriptor of this process either.
    with pytest.raises(OSError):
        os.fstat(fd)


def test_dup2_never_replaces_a_descriptor_the_host_owns() -> None:
    native = FakeNative()
    table, _ = _table(native)
    host_r, host_w = os.pipe()
    native.host_fds.add(host_w)
    fd = table.add(OpenFile(3, "pipe"))
    table.place(host_w, table.get(fd))
    # The host's pipe is untouched (writing to it reaches its reader); the enclave entry there is virtual.
    os.write(host_w, b"host")
    assert os.read(host_r, 4) == b"host"
    with pytest.raises(io.UnsupportedOperation):
        table.fileno(host_w)
    table.close(host_w)
    os.write(host_w, b"still")  # closing the enclave's entry did not close the host's descriptor
    assert os.read(host_r, 5) == b"still"


def test_negative_control_without_the_reserved_check_dup2_clobbers_the_host() -> None:
    native = FakeNative()
    native.reserved = lambda fd: False  # type: ignore[method-assign]
    table, _ = _table(native)
    host_r, host_w = os.pipe()
    fd = table.add(OpenFile(3, "pipe"))
    table.place(host_w, table.get(fd))
    os.write(host_w, b"x")  # now goes to the enclave's pipe, not the host's
    assert os.read(host_r, 1) == b""  # the host's pipe lost its writer: dup2 closed it
