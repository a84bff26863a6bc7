"""The untrusted runtime's dispatcher: one frame in, one frame out, whatever the enclave sent.

For every request: decode defensively (wire.py), re-check the argument ranges (validate.py), resolve handle
arguments through the handle table (only handles this enclave was given), re-check the policy on each resource
the table names, perform the call with the real functions, and encode the answer.  Each family's functions live
in the module of the same name (`files.py` serves the `files` rows of calls.py) and are found by call name.

`serve` never raises: whatever goes wrong becomes an errno answer, or (for a frame too broken to answer) None.
Answers are bytes, except a bulk read (64 KiB or more, a call with a `<name>_into` host function): its answer is a
memoryview of an answer frame the kernel filled directly, which the caller reads once and drops.
"""

from __future__ import annotations

import errno
import importlib
import logging
import signal as _signal
import stat as _stat
import sys
import threading
from collections.abc import Callable
from typing import Any

from .. import types as T
from ..access import ALLOW_ALL, Access, denial_errno, open_kinds
from ..calls import Call
from ..errors import require
from ..originals import os as real_os
from ..validate import CallChecks
from ..wire import (
    CODECS,
    HEADER,
    HEADER_SIZE,
    CallCodec,
    WireError,
    decode_request,
    encode_error,
)
from .confine import path_specs, run_resolved
from .handles import Handle, HandleTable

log = logging.getLogger("posix_shim.host")

HostFunction = Callable[..., Any]


def _family_functions(c: Call, suffix: str = "") -> HostFunction | None:
    """The host function of row `c` in its family's module; with suffix "_into", `<name>_into(host, *args, buffer)
    -> count`, one that reads straight into the answer frame."""
    try:
        module = importlib.import_module(f"{__package__}.{c.family}")
    except ModuleNotFoundError:
        return None
    return getattr(module, c.name + suffix, None)


# Below this many bytes a plain bytes answer is cheaper than filling a frame in place.
IN_PLACE_MIN = 64 << 10
# One answer frame per thread, reused by in-place answers: a fresh megabyte per bulk read costs page faults
# (glibc hands blocks that large back to the kernel), which made bulk reads several times slower than native.
# A frame is reused only when nothing holds its previous answer any more (its reference count says so), so an
# answer is never changed under whoever still has it.
_frames = threading.local()
_getrefcount = sys.getrefcount
# Set by the native-call supervisor (supervisor.py) around each forwarded syscall it performs: `syscall` (e.g.
# "openat") and `tid` (the child thread that made it), None otherwise.  The tracer reads it to mark the call
# as native; nothing on the dispatch path looks at it.
NATIVE = threading.local()


class Entry:
    """Everything the dispatcher needs for one call, computed once."""

    __slots__ = ("codec", "checks", "fn", "resources", "handle_idx", "single", "blocking", "name",
                 "request_checks", "handle_first", "fn_into", "into_count", "direct", "paths", "lean")

    def __init__(self, codec: CallCodec, fn: HostFunction | None) -> None:
        c = codec.call
        self.codec = codec
        self.checks = CallChecks(c)
        self.fn = fn
        index = {f.name: i for i, f in enumerate(c.params)}
        self.resources = tuple((index[name], kind, c.params[index[name]].type) for name, kind in c.resources)
        # The paths the host function receives resolved beneath their roots (calls.Resolve): confined here, once.
        self.paths = path_specs(c)
        # A host function that takes plain paths when nothing is confined (confine.run_resolved) must not be one
        # whose descriptor route opens with flags of its own (truncate's O_WRONLY): the plain path would skip them.
        require(not getattr(fn, "by_path", False) or all(not how.flags for _, _, how, _ in self.paths),
                f"{c.name}: a host function with `by_path` cannot serve a row whose paths open with flags")
        self.handle_idx = self.checks.handles
        self.single = codec.nresults == 1
        self.blocking = c.blocking
        # Read on every request: kept flat so the dispatcher follows no attribute chains.
        self.name = c.name
        self.request_checks = tuple(self.checks.request)
        self.handle_first = self.handle_idx == (0,)  # nearly every handle call: one handle, first
        # Bulk answers in place: a call answering one byte string bounded by a count argument (read, pread,
        # recv) whose family also has `<name>_into` gets its data read straight into the answer frame.
        self.fn_into: HostFunction | None = None
        self.into_count = -1
        self.direct: Callable[[Any], Any] | None = None  # set by the Host (Host._direct)
        self.lean: Callable[[tuple, int], Any] | None = None  # likewise: `direct` without the frames
        answer_type = c.results[0].type if codec.bytes_answer else None
        if fn is not None and isinstance(answer_type, T.Bytes):  # bytes_answer: one result, of type Bytes
            bound = answer_type.bound
            if bound is not None and bound.kind == "arg":
                self.fn_into = _family_functions(c, "_into")
                self.into_count = index[bound.name]
                # The in-place route hands its arguments to `<name>_into` as they came: it has no step that
                # resolves paths, so a row with path parameters may not have one (getxattr_into would be served
                # unconfined).  Handle rows only (read, pread, recv).
                require(self.fn_into is None or not c.paths,
                        f"{c.name}: a row with path parameters cannot have a `{c.name}_into` host function")


_getsignal = _signal.getsignal


def _handler_codes() -> set[Any]:
    codes = set()
    for signum in _signal.valid_signals():
        try:
            handler = _getsignal(signum)
        except (OSError, ValueError):
            continue
        code = getattr(getattr(handler, "__func__", handler), "__code__", None)
        if code is not None:
            codes.add(code)
    return codes


def _raised_by_signal_handler(exc: BaseException) -> bool:
    """Whether `exc` came out of a Python signal handler rather than from the host's own code.

    On the sim backend the enclave's blocking ocall is the host's system call in the same thread, so when a signal
    arrives CPython runs the program's handler inside it (PEP 475), and an exception the handler raises (test_io's
    `1/0` during a blocked write) surfaces in the host function.  Natively it reaches the program from the
    interrupted call; answering EIO would turn it into an I/O error.  The handler's frame is on the traceback.
    """
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    if len(frames) < 2:
        return False
    codes = _handler_codes()
    return any(code in codes for code in frames[1:])


def _host_function_failed(name: str, exc: Exception) -> None:
    """Log a host function's unexpected exception (the caller answers EIO), unless the program's own signal
    handler raised it inside the host's system call (sim): that one goes on to the program, as natively."""
    if _raised_by_signal_handler(exc):
        raise exc
    log.exception("host function %s failed", name, exc_info=exc)


class Host:
    """One enclave's host side: its handle table, its policy, its dispatch table."""

    def __init__(self, access: Access | None = None) -> None:
        self.handles = HandleTable()
        self.access = access or ALLOW_ALL
        self.entries: dict[int, Entry] = {
            n: Entry(codec, _family_functions(codec.call)) for n, codec in CODECS.items()
        }
        # Hooks for tracing and fault injection: called as hook(entry, args) before the real call and may
        # return an errno to answer instead.  Empty by default, so the fast path is one truth test.
        self.before: list[Callable[[Entry, tuple], int | None]] = []
        for entry in self.entries.values():
            entry.direct = self._direct(entry)
        self.closed = False
        # Releasing the workers blocked on this enclave's behalf when it goes (close): `gone` ends host sleeps,
        # the wake pipe ends polls, and the FIFO opens still waiting for a partner are given one.
        self.gone = threading.Event()
        self._waits: dict[int, tuple[bytes, int]] = {}  # thread id -> (path, flags) of an open(2) that may wait
        self._waits_lock = threading.Lock()
        self._wake: tuple[int, int] | None = None

    # -- blocked calls, released at close ------------------------------------------------------------------------
    def open_may_wait(self, path: bytes, flags: int) -> int:
        """Note that this thread is in an open(2) that may wait (a FIFO waits for its partner); end_wait after."""
        key = threading.get_ident()
        with self._waits_lock:
            if self.closed:
                raise OSError(errno.EBADF, "the enclave is gone")
            self._waits[key] = (path, flags)
        return key

    def end_wait(self, key: int) -> None:
        with self._waits_lock:
            self._waits.pop(key, None)

    def wake_fd(self) -> int:
        """The read end of a pipe that becomes readable when the enclave is gone: host polls include it."""
        with self._waits_lock:
            if self.closed:
                raise OSError(errno.EBADF, "the enclave is gone")
            if self._wake is None:
                self._wake = real_os.pipe2(real_os.O_CLOEXEC | real_os.O_NONBLOCK)
            return self._wake[0]

    def _release_waits(self) -> None:
        with self._waits_lock:
            waits, self._waits = list(self._waits.values()), {}
            wake, self._wake = self._wake, None
        if wake is not None:
            real_os.close(wake[1])  # the read end hangs up: every poll including it returns
        for path, flags in dict.fromkeys(waits):
            _give_fifo_a_partner(path, flags)
        if wake is not None:
            real_os.close(wake[0])

    # -- the one entry point -------------------------------------------------------------------------------
    def _direct(self, entry: Entry) -> Callable[[Any], Any] | None:
        """One call's whole service as one function, compiled once: `serve` + `perform` for a request of this
        call, with the same steps in the same order (decode, ENOSYS, request checks, handles, resources, the
        call, encode), minus the lookups, the in-between frame and the rebuilt argument tuple.  Used while no
        hook watches `perform` (tracing, fault injection: then the generic path runs, which they wrap).
        Answers None for anything it does not take (a frame the fast decoder refuses, a bulk read done in
        place): the generic path then serves it.

        Also sets `entry.lean`: the same service without the frames (the sim backend's lean route, see `lean`).
        Both routes run the one `run` below, so they cannot differ in a check."""
        if entry.fn is None:
            return None
        codec = entry.codec
        unpack, pack_result = codec.unpack_request, codec.pack_result
        conform_answer: Any = None  # codec.conform_answer, fetched at the first lean call (compiled then: wire.py)
        number, name, c = codec.number, entry.name, codec.call
        checks = entry.request_checks
        resources = entry.resources
        handle_first = entry.handle_first
        handle_idx = () if handle_first else entry.handle_idx
        into_count = entry.into_count if entry.fn_into is not None else -1
        single = entry.single
        get = self.handles.get
        access = self.access
        check_resource = self._check_resource
        resolve = self._resolve_handles
        paths = entry.paths
        plain_handle_call = handle_first and not resources and not paths  # (read, pread, write, fstat, close...)
        attrs = self.__dict__

        def run(args: tuple) -> tuple[int, Any]:
            """(0, what the host function returned) or (errno, None): every check, then the call."""
            try:
                fn = entry.fn  # read each time: a test may swap an entry's function
                if fn is None or not access.call_allowed(name):
                    raise OSError(errno.ENOSYS, f"{name} is not served by this host")
                for check in checks:
                    problem = check(args, args)
                    if problem:
                        log.warning("enclave sent a bad %s request: %s", name, problem)
                        raise OSError(errno.EINVAL, problem)
                if handle_first:
                    if plain_handle_call:  # the handle lookup folded into the call: no argument tuple rebuilt
                        return 0, fn(self, get(args[0]), *args[1:])
                    args = (get(args[0]), *args[1:])
                elif handle_idx:
                    args = resolve(entry, args)
                for i, kind, t in resources:
                    check_resource(c, kind, args, i, t)
                return 0, run_resolved(access, paths, fn, self, args) if paths else fn(self, *args)
            except OSError as exc:
                return _errno_of(exc), None
            except Exception as exc:  # a bug in a host function must not take the host down with it
                _host_function_failed(name, exc)
                return errno.EIO, None

        def direct(frame: Any) -> Any:
            request = unpack(frame)
            if request is None:
                return None
            seq, args = request
            if into_count >= 0 and args[into_count] >= IN_PLACE_MIN:
                return None
            err, result = run(args)
            if err:
                return encode_error(number, seq, err)
            try:
                return pack_result(seq, result)
            except WireError:
                log.exception("host answer for %s does not fit the table", name)
                return encode_error(number, seq, errno.EIO)

        def lean(args: tuple, seq: int) -> Any:
            """`direct` for a request already in its decoded form (conform.py): the results as the enclave would
            decode them (a tuple), an errno (an int), or an answer frame where only a frame can say (a result the
            conformer does not vouch for: the encoder then judges it, as on the frame route).  None while a hook
            watches `perform` or `serve`, or for a bulk read done in place: the caller then sends frames."""
            nonlocal conform_answer
            if (self.before or "perform" in attrs or "serve" in attrs
                    or (into_count >= 0 and args[into_count] >= IN_PLACE_MIN)):
                return None
            err, result = run(args)
            if err:
                return err if -0x80000000 <= err <= 0x7FFFFFFF else encode_error(number, seq, err)
            if conform_answer is None:
                conform_answer = codec.conform_answer
            results = conform_answer((result,) if single else result or ())
            if results is not None:
                return results
            try:
                return pack_result(seq, result)
            except WireError:
                log.exception("host answer for %s does not fit the table", name)
                return encode_error(number, seq, errno.EIO)

        entry.lean = lean
        return direct

    def serve(self, frame: bytes | memoryview) -> bytes | memoryview | None:
        try:
            entry = self.entries.get(frame[6] | frame[7] << 8) if len(frame) >= HEADER_SIZE else None
            if entry is not None and entry.direct is not None and not self.before and "perform" not in self.__dict__:
                answer = entry.direct(frame)
                if answer is not None:
                    return answer
        except WireError as exc:
            return self._refuse_frame(frame, exc)
        return self._serve(frame)

    def _serve(self, frame: bytes | memoryview) -> bytes | memoryview | None:
        try:
            # The fast path: the call number at offset 6 picks the call, whose compiled decoder accepts only a
            # well-formed request of that very call; anything else is decoded (and refused) the generic way.
            entry = self.entries.get(frame[6] | frame[7] << 8) if len(frame) >= HEADER_SIZE else None
            fast = entry.codec.unpack_request(frame) if entry is not None else None
            if entry is None or fast is None:
                codec, seq, args = decode_request(frame)
                entry = self.entries[codec.number]
            else:
                seq, args = fast
        except WireError as exc:
            return self._refuse_frame(frame, exc)
        codec = entry.codec
        # In place only when perform is the plain method: a tracer or injector that wraps it (wiring.make_host)
        # sees the ordinary bytes result, exactly as before.
        in_place = (entry.fn_into is not None and args[entry.into_count] >= IN_PLACE_MIN
                    and "perform" not in self.__dict__)
        try:
            result = self.perform(entry, args, into=codec.answer.size) if in_place else self.perform(entry, args)
        except OSError as exc:
            return encode_error(codec.number, seq, _errno_of(exc))
        except Exception as exc:  # a bug in a host function must not take the host down with it
            _host_function_failed(codec.call.name, exc)
            return encode_error(codec.number, seq, errno.EIO)
        try:
            if in_place:
                finish = codec.finish_in_place
                assert finish is not None  # for mypy: fn_into is only set for a bytes answer, which has one
                return finish(result[0], seq, result[1])
            return codec.pack_result(seq, result)  # encode_answer, for what the host function returned
        except WireError:
            log.exception("host answer for %s does not fit the table", codec.call.name)
            return encode_error(codec.number, seq, errno.EIO)

    def serve_into(self, frame: bytes | memoryview, area: memoryview) -> bytes | memoryview | None:
        """serve(), with `area` (writable, as large as a frame) as this thread's answer frame: a bulk read's data
        goes straight from the kernel into it (the ring passes its slot, so the answer needs no copy there)."""
        saved = getattr(_frames, "frame", None)
        _frames.frame = area
        del area  # only the thread-local may hold it, or perform takes it for an answer still in use
        try:
            return self.serve(frame)
        finally:
            _frames.frame = saved

    def perform(self, entry: Entry, args: tuple, *, into: int = 0) -> Any:
        """Check and run one decoded request; raises OSError for an errno answer.

        With `into` (the answer's header size), the call's `_into` function fills this thread's answer frame
        after that header, and (frame, count) is returned for `finish_in_place`.
        """
        if entry.fn is None or not self.access.call_allowed(entry.name):
            raise OSError(errno.ENOSYS, f"{entry.name} is not served by this host")
        for check in entry.request_checks:  # entry.checks.check_request, inlined
            problem = check(args, args)
            if problem:
                log.warning("enclave sent a bad %s request: %s", entry.name, problem)
                raise OSError(errno.EINVAL, problem)
        if entry.handle_first:
            args = (self.handles.get(args[0]), *args[1:])
        elif entry.handle_idx:
            args = self._resolve_handles(entry, args)
        for i, kind, t in entry.resources:
            self._check_resource(entry.codec.call, kind, args, i, t)
        for hook in self.before:
            err = hook(entry, args)
            if err:
                raise OSError(err, "injected")
        if into:
            fn_into = entry.fn_into
            assert fn_into is not None  # for mypy: `into` is only passed when the entry has fn_into (_serve)
            # The count was range-checked above (<= MAX_DATA) before any room is found for it.
            need = into + args[entry.into_count]
            frame = getattr(_frames, "frame", None)
            # 3 references: the thread-local's, `frame` here, getrefcount's argument.  More: an answer still held.
            if frame is None or len(frame) < need or _getrefcount(frame) > 3:
                frame = _frames.frame = bytearray(max(need, into + T.MAX_DATA))
            whole = memoryview(frame)
            data = whole[into:need]
            try:
                n = fn_into(self, *args, data)
            finally:
                data.release()
                whole.release()
            return frame, n
        if entry.paths:
            return run_resolved(self.access, entry.paths, entry.fn, self, args)
        return entry.fn(self, *args)

    def _resolve_handles(self, entry: Entry, args: tuple) -> tuple:
        resolved = list(args)
        for i in entry.handle_idx:
            resolved[i] = self.handles.get(args[i])
        return tuple(resolved)

    def _check_resource(self, c: Call, kind: str, args: tuple, i: int, t: T.WireType) -> None:
        value = args[i]
        if isinstance(t, T.Path) and not value.startswith(b"/"):
            # The enclave resolves paths against its own cwd; a relative path here would silently use the
            # host's cwd instead, so it is refused rather than guessed.
            raise OSError(errno.EINVAL, f"{c.name}: path must be absolute")
        kinds = open_kinds(args[1]) if kind == "open" else (kind,)
        for k in kinds:
            denial = self.access.check(c.name, k, value)
            if denial:
                log.warning("host refused %s: %s", c.name, denial)
                raise OSError(denial_errno(denial), denial)

    def _refuse_frame(self, frame: bytes | memoryview, exc: WireError) -> bytes | None:
        log.warning("host rejected a malformed frame: %s", exc)
        if len(frame) >= HEADER_SIZE:
            _, _, kind, number, seq, _ = HEADER.unpack_from(frame, 0)
            if number in CODECS:
                return encode_error(number, seq, errno.EPROTO)
        return None

    def close(self) -> None:
        """The enclave is gone: release its handles and every host thread still blocked on its behalf."""
        with self._waits_lock:
            if self.closed:
                return
            self.closed = True
        self.gone.set()
        self.handles.close_all()
        self._release_waits()


def _give_fifo_a_partner(path: bytes, flags: int) -> None:
    """Complete an open(2) of a FIFO that waits for the other end: open that end without blocking, then close it.

    The path is pinned first with O_PATH and reopened through its descriptor only when it is a FIFO, so a path
    swapped meanwhile for a regular file (or a symlink to one) is never opened for writing here.
    """
    try:
        pinned = real_os.open(path, real_os.O_PATH | real_os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not _stat.S_ISFIFO(real_os.fstat(pinned).st_mode):
            return
        other = real_os.O_RDONLY if flags & 3 == real_os.O_WRONLY else real_os.O_WRONLY
        try:
            fd = real_os.open(b"/proc/self/fd/%d" % pinned, other | real_os.O_NONBLOCK | real_os.O_CLOEXEC)
        except OSError:
            return  # ENXIO: no reader any more (it was released another way)
        real_os.close(fd)
    finally:
        real_os.close(pinned)


def _errno_of(exc: OSError) -> int:
    # An OSError without errno (a Python-level error) is reported as EIO rather than as "success".
    return exc.errno if isinstance(exc.errno, int) and exc.errno else errno.EIO


__all__ = ["Host", "Handle", "Entry"]
