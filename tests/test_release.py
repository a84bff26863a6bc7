"""Host threads blocked on behalf of an enclave are released when that enclave is closed.

Issue 14's case: a FIFO opened for reading by 300 threads (no writer ever comes) left 256 host workers stuck in
open(2) after the enclave was closed.  Closing the host now gives every waiting FIFO open its partner, shuts the
enclave's sockets down (which wakes accept/recv), ends host sleeps and polls (the `gone` event, the wake pipe).
The negative control closes the host with that release switched off and finds the threads still blocked.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ocall_bridge.access import ALLOW_ALL
from ocall_bridge.host.runtime import Host
from posix_shim import Enclave

PROGRAM = """
import os, select, socket, threading, time
fifo = {fifo!r}
os.mkfifo(fifo)
def opener():
    os.open(fifo, os.O_RDONLY)  # waits for a writer that never comes
for _ in range({n}):
    threading.Thread(target=opener, daemon=True).start()
server = socket.create_server(("127.0.0.1", 0))
threading.Thread(target=server.accept, daemon=True).start()
threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
r, w = os.pipe()
threading.Thread(target=select.select, args=([r], [], []), daemon=True).start()
start = time.monotonic()
while time.monotonic() - start < 1.0:  # not time.sleep: every host worker is taken, a sleep would queue
    pass
"""


def _host_workers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "posix_shim-host-worker")


def _settle(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_workers_blocked_for_an_enclave_are_released_when_it_is_closed(tmp_path: Path) -> None:
    before = _host_workers()
    enclave = Enclave(ALLOW_ALL, backend="process")
    with enclave:
        enclave.run_code(PROGRAM.format(fifo=str(tmp_path / "fifo"), n=300))
        assert _host_workers() - before >= 256  # the pool's limit: every worker is blocked
    assert _settle(lambda: _host_workers() <= before), f"{_host_workers() - before} host workers still blocked"


def test_negative_control_without_the_release_the_fifo_openers_stay_blocked(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from ocall_bridge.host import files

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    host = Host()
    monkeypatch.setattr(Host, "_release_waits", lambda self: None)
    def opener() -> None:
        try:
            files.open(host, os.fsencode(fifo), os.O_RDONLY, 0)
        except OSError:
            pass  # freed by the test's own writer below, into a closed table: EBADF

    threads = [threading.Thread(target=opener, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    host.close()
    time.sleep(0.5)
    assert all(t.is_alive() for t in threads)  # stuck in open(2): the release is what frees them
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # free them now, so the test leaves nothing behind
    os.close(fd)
    for t in threads:
        t.join(5)


def test_a_closed_host_releases_fifo_opens_polls_and_sleeps_in_process(tmp_path: Path) -> None:
    from ocall_bridge.host import files, poll
    from ocall_bridge.host import time as host_time

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    host = Host()
    r, w = files.pipe(host, 0)
    outcomes: list[str] = []

    def run(fn, *args) -> None:
        try:
            fn(*args)
            outcomes.append("returned")
        except OSError as exc:
            outcomes.append(os.strerror(exc.errno))

    threads = [threading.Thread(target=run, args=(files.open, host, os.fsencode(fifo), os.O_RDONLY, 0)),
               threading.Thread(target=run, args=(files.open, host, os.fsencode(fifo), os.O_WRONLY, 0)),
               threading.Thread(target=run, args=(poll.poll, host, [(r, 1)], -1)),
               threading.Thread(target=run, args=(host_time.sleep, host, 10_000_000_000))]
    # The reader and the writer of one FIFO would release each other: two FIFOs.
    fifo2 = tmp_path / "fifo2"
    os.mkfifo(fifo2)
    threads[1] = threading.Thread(target=run, args=(files.open, host, os.fsencode(fifo2), os.O_WRONLY, 0))
    for t in threads:
        t.daemon = True
        t.start()
    time.sleep(0.3)
    assert outcomes == []
    started = time.monotonic()
    host.close()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads) and time.monotonic() - started < 5
    # The FIFO opens complete into a closed table (EBADF), the sleep ends (EINTR); the poll ends either way (the
    # pipe's other end is closed with the table, or the wake pipe hangs up).
    assert outcomes.count("Bad file descriptor") == 2 and "Interrupted system call" in outcomes, outcomes
    assert len(host.handles) == 0
