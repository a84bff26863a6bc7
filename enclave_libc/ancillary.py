"""Ancillary data (control messages) of sendmsg and recvmsg, between the program's form and the wire's.

SCM_RIGHTS carries enclave fds in the program and host handles on the wire (calls.CMSG): a descriptor never
crosses the boundary, only the name of an open file the host already holds for this enclave.  The other
control messages the table serves (calls.ANCILLARY_SEND) pass as bytes; anything else is refused here, before
the host is asked.
"""

from __future__ import annotations

import _socket
import array as _array
import errno
import stat as _stat
from collections.abc import Iterable
from typing import Any

from ocall_bridge.records import ANCILLARY_SEND

from . import runtime
from .errors import Unsupported, oserror
from .fdtable import OpenFile
from .socket_values import AF_UNSPEC, SOL_SOCKET, _flat, _index, _lie

_NO_ADDRESS = (AF_UNSPEC, "", 0, 0, 0, b"")
_SCM_RIGHTS = (SOL_SOCKET, _socket.SCM_RIGHTS)
_INT = _array.array("i").itemsize


def _control_out(ancdata: Iterable[Any]) -> list[tuple[int, int, bytes]]:
    """sendmsg's (level, type, data) items for the wire: checked as CPython does, fds turned into handles."""
    rt = runtime.RT
    parsed = []
    for item in ancdata:  # every item's form first, as CPython checks them all before sending
        try:
            level, ctype, cdata = item
        except (TypeError, ValueError):
            raise TypeError("[sendmsg() ancillary data items]() argument must be sequence of length 3, not "
                            f"{type(item).__name__}") from None
        parsed.append((_index(level), _index(ctype), bytes(_flat(cdata))))
    items = []
    for level, ctype, cdata in parsed:
        if (level, ctype) not in ANCILLARY_SEND:
            raise Unsupported("sendmsg", f"control message level {level} type {ctype} is not served (descriptors, "
                                         "credentials, IP TTL/TOS and IPv6 hop limit/traffic class/packet info are)")
        if (level, ctype) == _SCM_RIGHTS:
            if len(cdata) % _INT:
                raise oserror(errno.EINVAL)
            cdata = _array.array("i", [rt.fds.get(fd).handle for fd in _array.array("i", cdata)]).tobytes()
        items.append((level, ctype, cdata))
    return items


# The fd table's kind (fdtable.OpenFile.kind) of a received descriptor, by its file type; anything else is a file.
_KINDS = {_stat.S_IFSOCK: "socket", _stat.S_IFIFO: "pipe", _stat.S_IFDIR: "dir"}


def _kind(mode: int) -> str:
    return _KINDS.get(_stat.S_IFMT(mode), "file")


def _control_in(anc: list[tuple[int, int, bytes]], flags: int) -> list[tuple[int, int, bytes]]:
    """recvmsg's control messages for the program: the handles of SCM_RIGHTS become new enclave fds."""
    rt = runtime.RT
    out = []
    for level, type, cdata in anc:
        if (level, type) == _SCM_RIGHTS:
            whole = len(cdata) - len(cdata) % _INT
            handles = list(_array.array("i", cdata[:whole]))
            problem = rt.client.plausible.fresh_handles(handles)
            if problem:
                raise _lie("recvmsg", problem)
            fds = []
            for h in handles:
                kind = _kind(rt.ocall.fstat(h)[0])
                fds.append(rt.fds.add(OpenFile(h, kind), cloexec=bool(flags & _socket.MSG_CMSG_CLOEXEC)))
            cdata = _array.array("i", fds).tobytes() + cdata[whole:]
        out.append((level, type, cdata))
    return out

