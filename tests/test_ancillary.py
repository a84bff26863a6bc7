"""Ancillary data across the boundary: SCM_RIGHTS between enclave descriptors, SCM_CREDENTIALS, and the IPv6
control messages of CPython's test_socket.

A descriptor never crosses the boundary: in the program it is an enclave fd, on the wire a host handle of this
enclave, and only inside the host a host descriptor.  So an enclave can pass only what it already holds, and a
host cannot slip an enclave a name for a file it already has (aliasing)."""

from __future__ import annotations

import array
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import program, run_shim

from enclave_libc import ancillary, runtime
from enclave_libc import files as efiles
from enclave_libc import sockets as esock
from enclave_libc.errors import HostViolation
from enclave_libc.runtime import EnclaveRuntime
from ocall_bridge.calls import BY_NAME
from ocall_bridge.client import OcallClient
from ocall_bridge.host import sockets as host_sockets
from ocall_bridge.host.runtime import Host
from ocall_bridge.transport import SimTransport

PROGRAM = program("ancillary_program.py")


def test_descriptors_and_credentials_pass_between_enclave_sockets(tmp_path: Path, backend: str) -> None:
    r = run_shim(["-c", PROGRAM], backend=backend, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "b'here' True True 0 4", "through the passed pipe file contents", "b'x' [4] True", "b'c' True True True",
        f"bad fd {errno.EBADF}"]


@pytest.fixture()
def enclave() -> Iterator[tuple[Host, EnclaveRuntime]]:
    host = Host()
    rt = EnclaveRuntime(OcallClient(SimTransport(host)))
    previous = runtime.activate(rt)
    try:
        yield host, rt
    finally:
        runtime.activate(previous)
        host.close()


def test_host_sends_only_descriptors_of_this_enclaves_handles(enclave: tuple[Host, EnclaveRuntime]) -> None:
    """An enclave naming a raw host descriptor (here the host's own end of a socket) gets EBADF: SCM_RIGHTS on
    the wire holds handles, and the host looks each up in this enclave's table."""
    host, _ = enclave
    ha, hb = host_sockets.socketpair(host, socket.AF_UNIX, socket.SOCK_STREAM, 0)
    secret_r, secret_w = os.pipe()  # a host descriptor the enclave was never given
    try:
        sendmsg = host.entries[BY_NAME["sendmsg"].number]
        raw = array.array("i", [secret_w]).tobytes()
        with pytest.raises(OSError) as info:
            host.perform(sendmsg, (ha, b"x", [(socket.SOL_SOCKET, socket.SCM_RIGHTS, raw)], 0, ancillary._NO_ADDRESS))
        assert info.value.errno == errno.EBADF
        # Negative control: a handle of this enclave is sent, and arrives on the other end as a new handle.
        own = array.array("i", [ha]).tobytes()
        assert host.perform(sendmsg, (ha, b"y", [(socket.SOL_SOCKET, socket.SCM_RIGHTS, own)], 0,
                                      ancillary._NO_ADDRESS)) == 1
        data, anc, _, _ = host.perform(host.entries[BY_NAME["recvmsg"].number], (hb, 10, 64, 0))
        assert data == b"y" and len(anc) == 1
        [new] = array.array("i", anc[0][2])
        assert new not in (ha, hb) and host.handles.get(new).kind == "socket"
        # A control message outside the allowed set is refused by the host too.
        with pytest.raises(OSError) as info:
            host.perform(sendmsg, (ha, b"z", [(socket.SOL_SOCKET, 99, b"")], 0, ancillary._NO_ADDRESS))
        assert info.value.errno == errno.EPERM
    finally:
        os.close(secret_r)
        os.close(secret_w)


def test_enclave_refuses_a_received_handle_it_already_holds(enclave: tuple[Host, EnclaveRuntime]) -> None:
    """A host answering recvmsg with a handle the enclave already has would alias two enclave fds onto one file
    (and let the host swap what the program reads): a host violation.  A handle never seen before is accepted."""
    host, rt = enclave
    a, b = esock.socketpair()
    held = a._handle()
    real = host.entries[BY_NAME["recvmsg"].number].fn

    def lying(host_: Host, h: object, count: int, ancbufsize: int, flags: int) -> tuple:
        data, anc, msg_flags, addr = real(host_, h, count, ancbufsize, flags)
        return data, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [held]).tobytes())], msg_flags, addr

    host.entries[BY_NAME["recvmsg"].number].fn = lying
    a.send(b"1")
    with pytest.raises(HostViolation, match="issued before"):
        b.recvmsg(10, 64)
    # Negative control: the honest host's fresh handle becomes a new enclave fd.
    host.entries[BY_NAME["recvmsg"].number].fn = real
    r, w = efiles.pipe()
    a.sendmsg([b"2"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]))])
    _, anc, _, _ = b.recvmsg(10, 64)
    [fd] = array.array("i", anc[0][2])
    assert fd not in (a._fd, b._fd, r, w)
    efiles.write(fd, b"ok")
    assert efiles.read(r, 2) == b"ok"
