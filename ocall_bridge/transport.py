"""How a request frame reaches the host and its answer comes back.

Every transport offers `roundtrip(frame, seq) -> answer frame`.  The trusted client does not care which one
carries its frames; the wire format is the same on all of them.

* `SimTransport`: the host lives in this process; a round trip is a function call on the calling thread.  It
  also offers `lean(number)`: the same service without the frames, for arguments and answers that conform.py
  shows a frame would carry unchanged (the checks on both sides are the same ones: tests/test_lean.py).
* The process transport (a socketpair to a child process) lives in `process.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import HostGone
from .host.runtime import Host
from .originals import os as _os


class SimTransport:
    """Enclave and host in one process, as Asylo's simulated backend."""

    name = "sim"

    def __init__(self, host: Host, lean: bool = True) -> None:
        self.host = host
        # lean=False: every call as frames (tests compare the two routes; benchmarks may show the difference).
        self.lean_route = lean

    def roundtrip(self, frame: bytes, seq: int) -> bytes | memoryview:
        answer = self.host.serve(frame)
        if answer is None:
            raise HostGone("the host dropped a frame it could not parse")
        return answer

    def lean(self, number: int) -> Callable[[tuple, int], Any] | None:
        """The lean route of call `number` (host/runtime.py `Host._direct`): the host's service of a request in
        its decoded form, with every check of the frame route, minus the frames.  The client takes it for
        arguments that conform.py vouches for; it answers None whenever the frames must be used (a hook on the
        host).  None here when this transport's round trip is not the plain one (a test's, a wrapper's)."""
        if not self.lean_route or "roundtrip" in self.__dict__ or type(self).roundtrip is not SimTransport.roundtrip:
            return None
        entry = self.host.entries.get(number)
        return None if entry is None else entry.lean

    # -- one fd space (enclave_libc.fdtable.NativeFds) ------------------------------------------------------
    # The host's descriptor lives in this very process, so the enclave's real descriptor for a handle is a
    # duplicate of it: the same open file, a number the kernel chose (never one C code could confuse with
    # another file).
    def fd_for(self, handle: int) -> int | None:
        return self.host.handles.duplicate(handle)

    @staticmethod
    def reserved(fd: int) -> bool:
        # Any open descriptor the enclave's table does not hold belongs to the host process (the runner, the
        # test framework, the sim host's own files): a program's dup2 must never replace it.
        try:
            _os.fstat(fd)  # (not fcntl: that is an audited event the Python-level wall refuses while sealed)
        except OSError:
            return False
        return True

    @staticmethod
    def same_file(a: int, b: int) -> bool:
        try:
            sa, sb = _os.fstat(a), _os.fstat(b)
        except OSError:
            return False
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)

    def close(self) -> None:
        self.host.close()
