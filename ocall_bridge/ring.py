"""The switchless transport of the process backend: request slots in a mapping both processes share.

Why: over the socketpair every ocall wakes a thread in the other process (25-35 us each way on this kind of
machine).  Here the enclave thread writes its request frame into a slot of a shared mapping and spins a
bounded number of iterations for the answer; the host's ring server spins the same way for requests.  While
both are busy a round trip costs two memory copies and no system call (the analogue of SGX switchless calls /
HotCalls).  When a side has spun its budget out it blocks on a "bell" descriptor, an eventfd by default (a wake
through a descriptor can pull the sleeper onto the waker's CPU, which a bare futex does not), so an idle enclave
burns no CPU beyond the spin budget below.

Layout (one memfd, created by the host, mapped by both; native byte order, u32 words):

    page 0   words 0..7: MAGIC, slot count, slot size, host asleep, doorbell counter, -, -, -
             then per slot (16 words, 64 bytes each): state, waiter asleep, length, -
    page 1+  the slots' frame areas, `slot_size` bytes each (a whole frame: MAX_FRAME, page-rounded)

A slot goes FREE -> REQ (enclave: frame written) -> TAKEN (host: frame copied out) -> ANS (host: answer
written) -> FREE (enclave: answer copied out).  Only the enclave allocates slots (a private free list), so the
host can never make two enclave threads share one.

Trust (the double-fetch rule): each side reads what the other may still change exactly once, into private
memory, and checks only that private copy.  The enclave reads an answer's length word once, bounds it, copies
the frame out, and hands the copy to the client, whose codec and checks never see shared memory.  A bulk read
(the client's into route, `roundtrip(..., buffer, size)`) is copied once: its header into a private probe
frame, its data straight into the caller's buffer, both before the client checks anything (`_place`).  The
host copies a request out before decoding it.  A host that rewrites a slot after the copy changes nothing.

What stays on the socketpair (`process.py`): ecalls, the confined child's listener, and every call whose answer
issues handles (their descriptors travel with SCM_RIGHTS ahead of the answer).  Calls that may block (their
table row says `blocking`) ride the ring too; the host serves them on its worker pool unless it can tell that
this one cannot wait (`quick`: a read or write of a regular file, a send or receive on an O_NONBLOCK
descriptor), and the enclave spins for them like for any call, with a budget of their own (see `_spin`).

Spin budget (the CPU an idle enclave burns): after a request the enclave thread spins at most ENCLAVE_SPIN
iterations of a ~40-200 ns loop (about 20-100 us, depending on load) before it sleeps; the host's ring server
spins at most HOST_SPIN iterations (about 40-200 us) after the last request it saw, then sleeps until a bell.
A call that keeps ending in a sleep stops spinning (its budget halves down to nothing) and spends the full
budget again only every PROBE_EVERY-th wait.  Sleepers re-check every WAKE_CHECK_MS (a poll timeout), so an
idle enclave costs one wake-up of the host's ring thread per 50 ms, plus one per thread blocked in a long call.

Like `process.py`, the enclave half uses only references captured at import (the interposer rewrites `os`,
`select` and `time` in the child) and never logs or reads a clock.
"""

from __future__ import annotations

import mmap as _mmap
import select as _select
import struct
import threading
from collections.abc import Callable
from typing import Any

from .calls import BY_NUMBER
from .errors import HostGone
from .originals import os as _real
from .types import MAX_FRAME
from .wire import CODECS, HEADER_SIZE

MAGIC = 0x52494E47  # "RING"
SLOTS = 8  # concurrent ocalls served switchless; more threads than this fall back to the socketpair
PAGE = 4096
SLOT_SIZE = (MAX_FRAME + PAGE - 1) // PAGE * PAGE
# Spin budgets, in loop iterations (the enclave must not read a clock: that is an ocall).  One iteration of
# either loop costs 40-60 ns here (docs/performance.md), so the enclave spins at most ~25 us for an answer and
# the host ~50 us for the next request before it blocks: what an idle enclave costs in CPU after its last call.
ENCLAVE_SPIN = 500
HOST_SPIN = 1000
# The budgets adapt, as an adaptive mutex's: a spin that ends in a sleep halves the next one (the peer is not
# running: on a loaded machine spinning only steals its CPU), a spin that catches its event doubles it.  Below
# MIN_SPIN a side does not spin at all, and tries the full budget again every PROBE_EVERY waits.
MIN_SPIN = 16
PROBE_EVERY = 64
WAKE_CHECK_MS = 50  # a sleeper re-checks at least this often (a lost wake-up costs latency, never a hang)

FREE, REQ, TAKEN, ANS = 0, 1, 2, 3
_W_MAGIC, _W_SLOTS, _W_SIZE, _W_ASLEEP, _W_BELL = 0, 1, 2, 3, 4
_SLOT_WORDS = 16
_SLOT_BASE = 8  # first word of slot 0's header
_PLACE_MIN = 16 << 10  # data answers from this size on take the one-copy route (below it a copy is cheaper)
_BIG = 64 << 10  # answers above this are copied into a reused private buffer instead of a fresh bytes object

_eventfd, _pipe, _open = _real.eventfd, _real.pipe, _real.open
_write, _read = _real.write, _real.read
_ONE = (1).to_bytes(8, "little")  # one ring: an eventfd's increment, or eight bytes in a pipe


def _ring_bell(fd: int) -> None:
    """Wake the side sleeping on bell `fd` (a full pipe or counter already rings: nothing to add)."""
    try:
        _write(fd, _ONE)
    except BlockingIOError:
        pass


def _quiet_bell(fd: int) -> None:
    """Take back what rang (non-blocking: nothing rang is fine)."""
    try:
        _read(fd, 4096)
    except BlockingIOError:
        pass


def _bell(kind: str) -> int:
    """One bell, a single descriptor both sides poll and write.  A pipe opened read-write (through /proc) wakes
    its sleeper with a synchronous wake-up, which pulls it onto the waker's CPU; an eventfd does not."""
    if kind == "eventfd":
        return _eventfd(0, _real.EFD_CLOEXEC | _real.EFD_NONBLOCK)
    if kind != "pipe":
        raise ValueError(f"a ring bell is an eventfd or a pipe, not {kind!r}")
    r, w = _pipe()
    try:
        return _open(f"/proc/self/fd/{r}", _real.O_RDWR | _real.O_CLOEXEC | _real.O_NONBLOCK)
    finally:
        _close(r)
        _close(w)


_close, _set_blocking = _real.close, _real.set_blocking
_poll, _POLLIN = _select.poll, _select.POLLIN
_getrefcount = __import__("sys").getrefcount
_BLOCKING = frozenset(n for n, c in BY_NUMBER.items() if c.blocking)
_MAX_CALL = max(BY_NUMBER)
_I64 = struct.Struct("<q")
# Calls whose answer is one byte string (read, pread, recv...): the host may fill their answer in place.
_BYTES_ANSWER = frozenset(c.number for c in CODECS.values() if c.finish_in_place is not None)
# Of those, the calls whose request starts (handle, count): their count is an i64 right after the handle.
_COUNT_SECOND = frozenset(n for n in _BYTES_ANSWER if [(p.name, getattr(p.type, "code", "")) for p in
                                                      BY_NUMBER[n].params[:2]] == [("fd", "q"), ("count", "q")])
# Calls whose answer may issue a handle: the host passes its descriptor over the socketpair just ahead of the
# answer, so these never ride the ring (see process.py, FDS frames).  The control family (attach: the standard
# streams' handles, once per run) goes the same way.
ISSUES_HANDLES = frozenset(n for n, c in BY_NUMBER.items() if c.family == "control" or c.issues_handles)


def mapping_size(slots: int = SLOTS) -> int:
    return PAGE + slots * SLOT_SIZE


class RingFds:
    """What the host creates and the child inherits: the memfd and the bells (host's, then one per slot)."""

    def __init__(self, memfd: int, host_bell: int, bells: list[int]) -> None:
        self.memfd, self.host_bell, self.bells = memfd, host_bell, bells

    @classmethod
    def create(cls, slots: int = SLOTS, bell: str = "eventfd") -> RingFds:
        """`bell`: "eventfd" or "pipe" (see _bell; docs/performance.md has what each measured here)."""
        memfd = _real.memfd_create("posix_shim-ring", _real.MFD_CLOEXEC)
        _real.ftruncate(memfd, mapping_size(slots))
        # The header is written before the child can map it (it checks these words first).
        mm = _mmap.mmap(memfd, PAGE, _mmap.MAP_SHARED, _mmap.PROT_READ | _mmap.PROT_WRITE)
        with memoryview(mm) as view, view.cast("I") as w:
            w[_W_SLOTS], w[_W_SIZE], w[_W_MAGIC] = slots, SLOT_SIZE, MAGIC
        mm.close()
        return cls(memfd, _bell(bell), [_bell(bell) for _ in range(slots)])

    def all(self) -> list[int]:
        return [self.memfd, self.host_bell, *self.bells]

    def to_arg(self) -> str:
        return "ring=" + ",".join(map(str, self.all()))

    @classmethod
    def from_arg(cls, arg: str) -> RingFds:
        fds = [int(x) for x in arg.removeprefix("ring=").split(",")]
        if len(fds) < 3:
            raise ValueError(f"bad ring argument {arg!r}")
        return cls(fds[0], fds[1], fds[2:])

    def close(self) -> None:
        for fd in self.all():
            if fd >= 0:
                try:
                    _close(fd)
                except OSError:
                    pass
        self.memfd, self.host_bell, self.bells = -1, -1, [-1] * len(self.bells)

    def close_memfd(self) -> None:
        """The mapping outlives its descriptor: each side closes it once mapped (and, on the host, passed)."""
        if self.memfd >= 0:
            _close(self.memfd)
            self.memfd = -1


def _map(memfd: int) -> tuple[_mmap.mmap, memoryview, memoryview]:
    size = _real.fstat(memfd).st_size
    mm = _mmap.mmap(memfd, size, _mmap.MAP_SHARED, _mmap.PROT_READ | _mmap.PROT_WRITE)
    view = memoryview(mm)
    return mm, view, view[:PAGE].cast("I")


def _map_no_fd(memfd: int) -> tuple[Any, memoryview, memoryview]:
    """The enclave's mapping, made with libc's mmap: Python's mmap keeps a dup of the descriptor, which would sit
    at a small number in the enclave process's one fd space (where the program's first open must land).

    Runs once, at start, before the Python-level wall is armed (ctypes calls are audited events there).
    """
    import ctypes

    size = _real.fstat(memfd).st_size
    libc = ctypes.CDLL(None, use_errno=True)
    mmap_ = libc.mmap
    mmap_.restype = ctypes.c_void_p
    mmap_.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    addr = mmap_(None, size, _mmap.PROT_READ | _mmap.PROT_WRITE, _mmap.MAP_SHARED, memfd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot map the ring: {_real.strerror(err)}")
    area = (ctypes.c_char * size).from_address(addr)  # lives as long as the process: never unmapped
    view = memoryview(area).cast("B")
    return area, view, view[:PAGE].cast("I")


# -- the enclave side ---------------------------------------------------------------------------------------


class RingClient:
    """The enclave's half: `roundtrip(frame, seq, call)` through a free slot, or None if none is free.

    `on_wait(True/False)` brackets the blocking wait (the transport marks the main thread interruptible there,
    see process.EnclaveTransport.run_handler).  A wait cut short by an exception leaves its slot abandoned:
    it is taken back only once the host has answered it, so a late answer can never land in a new call.
    """

    def __init__(self, fds: RingFds, spin: int = ENCLAVE_SPIN) -> None:
        self._mm, self._view, self._w = _map_no_fd(fds.memfd)
        fds.close_memfd()
        w = self._w
        nslots = len(fds.bells)
        if w[_W_MAGIC] != MAGIC or w[_W_SLOTS] != nslots or w[_W_SIZE] != SLOT_SIZE:
            raise ValueError("the shared mapping is not a ring of this build")
        self.host_bell, self.bells = fds.host_bell, list(fds.bells)
        for fd in self.bells:
            _set_blocking(fd, False)
        self.spin = spin
        # Per call number: the current spin budget and the waits since it fell below MIN_SPIN (see _spin).
        self._budgets = [spin] * (_MAX_CALL + 1)
        self._probes = [0] * (_MAX_CALL + 1)
        self.sleeps = 0  # waits that ended in a blocking sleep (for benchmarks)
        self.placed = 0  # answers whose data took the one-copy route (for tests and benchmarks)
        self._free = list(range(nslots - 1, -1, -1))
        self._abandoned: list[int] = []
        self._polls = []
        for fd in self.bells:
            p = _poll()
            p.register(fd, _POLLIN)
            self._polls.append(p)
        self._private: dict[int, bytearray] = {}  # per slot: the reused buffer for big answers
        self.dead: str | None = None

    def fds(self) -> list[int]:
        return [self.host_bell, *self.bells]

    def _reclaim(self) -> None:
        w, keep = self._w, []
        for i in self._abandoned:
            if w[_SLOT_BASE + i * _SLOT_WORDS] == ANS:
                w[_SLOT_BASE + i * _SLOT_WORDS] = FREE
                self._free.append(i)
            else:
                keep.append(i)
        self._abandoned = keep

    def roundtrip(self, frame: bytes | memoryview, call: int, on_wait: Callable[[bool], None] | None = None,
                  buffer: memoryview | None = None, size: int = 0) -> Any:
        """The answer to `frame` (a private copy), or None when no slot is free (the caller uses the socket).

        With `buffer` (the into route, `size` the answer's fixed part): `(answer, placed)`.  When `placed`, the
        answer's data went from the slot straight into `buffer` (one copy) and `answer` is a private probe
        frame: its first `size` bytes are the answer's header as read, the rest is not data (see `_place`).
        """
        if self.dead is not None:
            raise HostGone(self.dead)
        try:
            i = self._free.pop()  # atomic under the GIL
        except IndexError:
            if not self._abandoned:
                return None
            self._reclaim()
            if not self._free:
                return None
            i = self._free.pop()
        w = self._w
        h = _SLOT_BASE + i * _SLOT_WORDS
        off = PAGE + i * SLOT_SIZE
        n = len(frame)
        done = False
        try:
            self._view[off:off + n] = frame
            w[h + 2] = n
            w[h + 1] = 0
            w[h] = REQ
            w[_W_BELL] = (w[_W_BELL] + 1) & 0xFFFFFFFF
            if w[_W_ASLEEP]:
                _ring_bell(self.host_bell)
            if w[h] != ANS:
                self._spin(h, call)
                if w[h] != ANS:
                    self._sleep(i, h, on_wait)
            answer: Any
            if buffer is None:
                answer = self._copy_out(i, off, w[h + 2])
            else:
                answer = self._place(i, off, w[h + 2], buffer, size)
            done = True
            return answer
        finally:
            if done:
                w[h] = FREE
                self._free.append(i)
            else:
                self._abandoned.append(i)

    def _spin(self, h: int, call: int) -> None:
        """Wait for slot word h to say ANS for at most this call's budget (see MIN_SPIN), and adapt it.

        Each call number has its own budget: a pread answered in microseconds and a recv that waits for a peer
        teach the ring different things.  A call that may block (the table's `blocking`) spins too: a write to
        a regular file is as quick as a pread, and a recv whose data is already there needs no sleep; one that
        really waits costs one spin, then its budget halves until it stops spinning (probing again now and then).
        """
        budgets = self._budgets
        budget = budgets[call]
        if budget < MIN_SPIN:
            probes = self._probes
            probes[call] += 1
            if probes[call] < PROBE_EVERY:
                return
            probes[call], budget = 0, self.spin
        w, k = self._w, budget
        while k and w[h] != ANS:
            k -= 1
        budgets[call] = min(self.spin, budget * 2) if k else budget >> 1

    def _copy_out(self, i: int, off: int, n: int) -> bytes | memoryview:
        """The answer of slot i, `n` its length word as read once: bounded, then copied to private memory.

        Only this copy is decoded and checked; later writes to the slot by the host change nothing.
        """
        if not 0 < n <= SLOT_SIZE:
            return b""  # the client refuses it as a malformed answer
        if n <= _BIG:
            return bytes(self._view[off:off + n])
        buf = self._private.get(i)
        # A buffer still referenced (a memoryview of an earlier answer is alive) is never overwritten.
        if buf is None or _getrefcount(buf) > 3:
            buf = self._private[i] = bytearray(SLOT_SIZE)
        buf[:n] = self._view[off:off + n]
        return memoryview(buf)[:n]

    def _place(self, i: int, off: int, n: int, buffer: memoryview, size: int) -> tuple[Any, bool]:
        """The one-copy route of a bulk answer: its data straight from the slot into the caller's `buffer`.

        `n` is the length word as read once, and bounded.  The first `size` bytes (the header and the fixed
        fields) are copied into a private probe frame of length `n`, the remaining `n - size` bytes into
        `buffer`: every byte of the answer is read from the slot exactly once, into private memory, before
        the client checks anything (the header on the probe, whose length is `n`; the data in `buffer`).  The
        probe's body is never written (untouched pages of a private mapping) and never used.  A small answer,
        or one whose data would not fit `buffer` (an error, a lie), is copied whole as `_copy_out` does.
        """
        if not 0 < n <= SLOT_SIZE:
            return b"", False
        d = n - size
        if d < _PLACE_MIN or d > len(buffer):
            return self._copy_out(i, off, n), False
        probe = self._probe(i, n)
        probe[:size] = self._view[off:off + size]
        buffer[:d] = self._view[off + size:off + n]
        self.placed += 1
        return probe, True

    @staticmethod
    def _probe(i: int, n: int) -> memoryview:
        """A fresh probe frame for an answer of slot i (an anonymous mapping: only its first page is ever touched,
        ~2 us).  Not one kept per slot: the slot goes back to the free list before the client reads the header,
        and the next thread to take it would overwrite a header still unread (a spurious refusal of an honest
        host)."""
        return memoryview(_mmap.mmap(-1, n))

    def _sleep(self, i: int, h: int, on_wait: Callable[[bool], None] | None) -> None:
        w, bell, p = self._w, self.bells[i], self._polls[i]
        self.sleeps += 1
        w[h + 1] = 1
        try:
            while w[h] != ANS:
                if self.dead is not None:
                    raise HostGone(self.dead)
                if on_wait is not None:
                    on_wait(True)
                    p.poll(WAKE_CHECK_MS)
                    on_wait(False)
                else:
                    p.poll(WAKE_CHECK_MS)
                _quiet_bell(bell)
        finally:
            w[h + 1] = 0

    def fail(self, reason: str) -> None:
        """The host is gone: wake every sleeper (each sees `dead` and raises HostGone)."""
        if self.dead is None:
            self.dead = reason
        for fd in self.bells:
            try:
                _ring_bell(fd)
            except OSError:
                pass


# -- the host side ------------------------------------------------------------------------------------------


class RingServer:
    """The host's half: one thread serves the slots, quick calls inline and blocking ones on `submit`.

    `serve(frame) -> answer | None` is the host's (Host.serve); `submit(frame, deliver)` hands a blocking call to
    the worker pool, which calls `deliver(answer)` when it is done (HostChannel._submit).
    """

    def __init__(self, fds: RingFds, serve: Callable[[bytes], Any], submit: Callable[..., None],
                 spin: int = HOST_SPIN, serve_into: Callable[[bytes, memoryview], Any] | None = None,
                 quick: Callable[[bytes], bool] | None = None) -> None:
        nslots = len(fds.bells)
        self._mm, self._view, self._w = _map(fds.memfd)
        fds.close_memfd()
        self.fds = fds
        self._serve, self._submit, self._serve_into = serve, submit, serve_into
        # quick(frame): True when a call the table marks `blocking` cannot wait long this time (a read or write
        # of a regular file): it is served inline, without a hand-off to the pool.
        self._quick = quick
        self.spin = self._budget = spin
        self._probe = 0
        self._n = nslots
        self._stopped = False
        # Blocking calls handed to the pool and answered (the first counted by this thread only, the second
        # under a lock: workers finish concurrently).
        self._submitted = self._completed = 0
        self.served = 0  # requests taken off the ring (for tests and benchmarks)
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="posix_shim-ring", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _take(self, i: int) -> None:
        w = self._w
        h = _SLOT_BASE + i * _SLOT_WORDS
        w[h] = TAKEN
        self.served += 1
        n = w[h + 2]  # read once: the enclave may change it
        off = PAGE + i * SLOT_SIZE
        if not 0 < n <= SLOT_SIZE:
            self._answer(i, b"")  # the enclave refuses an empty answer; nothing was served
            return
        frame = bytes(self._view[off:off + n])  # the private copy the host decodes and checks
        call = frame[6] | frame[7] << 8 if n >= 8 else -1
        serve = self._serve
        serve_into = self._serve_into
        if call in _BYTES_ANSWER and serve_into is not None and (
                call not in _COUNT_SECOND
                or (n >= HEADER_SIZE + 16 and _I64.unpack_from(frame, HEADER_SIZE + 8)[0] >= _PLACE_MIN)):
            # A bulk read: its data may go straight in (a small one skips the thread-local lending)
            serve = lambda frame: serve_into(frame, self._view[PAGE + i * SLOT_SIZE:PAGE + (i + 1) * SLOT_SIZE])
        if call in _BLOCKING and (self._quick is None or not self._quick(frame)):
            self._submitted += 1
            self._submit(frame, lambda answer, i=i: self._deliver(i, answer), serve)
            return
        self._answer(i, serve(frame))

    def _deliver(self, i: int, answer: Any) -> None:
        with self._count_lock:
            self._completed += 1
        if not self._stopped:
            try:
                self._answer(i, answer)
            except ValueError:  # stopped meanwhile: the mapping's views are released, nobody waits any more
                pass

    def _answer(self, i: int, answer: Any) -> None:
        w = self._w
        h = _SLOT_BASE + i * _SLOT_WORDS
        if answer is None:
            answer = b""
        n = len(answer)
        off = PAGE + i * SLOT_SIZE
        if answer.__class__ is memoryview and answer.obj is self._mm:
            answer.release()  # served in place (Host.serve_into): the answer already sits at the slot's start
        else:
            self._view[off:off + n] = answer
        w[h + 2] = n
        w[h] = ANS
        if w[h + 1]:
            try:
                _ring_bell(self.fds.bells[i])
            except OSError:
                pass

    def _scan(self) -> bool:
        w, found = self._w, False
        for i in range(self._n):
            if w[_SLOT_BASE + i * _SLOT_WORDS] == REQ:
                found = True
                self._take(i)
        return found

    def _loop(self) -> None:
        w, bell = self._w, self.fds.host_bell
        p = _poll()
        p.register(bell, _POLLIN)
        _set_blocking(bell, False)
        last = w[_W_BELL]
        while not self._stopped:
            seen = w[_W_BELL]
            if seen != last:
                last = seen
                self._scan()
                continue
            # Spin only while no blocking call is in flight: its worker needs this process's GIL to answer.
            budget = self._budget if self._submitted == self._completed else 0
            if budget < MIN_SPIN and budget == self._budget:
                self._probe += 1
                if self._probe >= PROBE_EVERY:
                    self._probe, budget = 0, self.spin
            if budget >= MIN_SPIN:
                k = budget
                while k and w[_W_BELL] == last:
                    k -= 1
                self._budget = min(self.spin, budget * 2) if k else budget >> 1
                if k:
                    continue
            w[_W_ASLEEP] = 1
            if not self._scan() and w[_W_BELL] == last:
                p.poll(WAKE_CHECK_MS)
                _quiet_bell(bell)
            w[_W_ASLEEP] = 0

    def stop(self) -> None:
        """The enclave is gone (or the host closes): end the server thread and release the descriptors."""
        self._stopped = True
        try:
            _ring_bell(self.fds.host_bell)
        except OSError:
            pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        self.fds.close()
        self._w.release()
        self._view.release()
        try:
            self._mm.close()
        except BufferError:  # a worker still holds a view of a slot; the mapping goes with the process
            pass


__all__ = ["RingFds", "RingClient", "RingServer", "SLOTS", "SLOT_SIZE", "ENCLAVE_SPIN", "HOST_SPIN",
           "ISSUES_HANDLES", "mapping_size"]
