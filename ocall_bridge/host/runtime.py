"""The untrusted runtime's dispatcher: one frame in, one frame out, whatever the enclave sent.

For every request: decode defensively (wire.py), re-check the argument ranges (validate.py), resolve handle
arguments through the handle table (only handles this enclave was given), re-check the policy on each resource
the table names, perform the call with the real functions, and encode the answer.  Each family's functions live
in the module of the same name (`files.py` serves the `files` rows of calls.py) and are found by call name.

`serve` never raises: whatever goes wrong becomes an errno answer, or (for a frame too broken to answer) None.
"""

from __future__ import annotations

import errno
import importlib
import logging
from collections.abc import Callable
from typing import Any

from .. import types as T
from ..access import ALLOW_ALL, Access, open_kinds
from ..calls import CALLS, Call
from ..validate import CallChecks
from ..wire import (
    CODECS,
    HEADER,
    HEADER_SIZE,
    CallCodec,
    WireError,
    decode_request,
    encode_answer,
    encode_error,
)
from .handles import Handle, HandleTable

log = logging.getLogger("posix_shim.host")

HostFunction = Callable[..., Any]


def _family_functions(c: Call) -> HostFunction | None:
    try:
        module = importlib.import_module(f"{__package__}.{c.family}")
    except ModuleNotFoundError:
        return None
    return getattr(module, c.name, None)


class Entry:
    """Everything the dispatcher needs for one call, computed once."""

    __slots__ = ("codec", "checks", "fn", "resources", "handle_idx", "single", "blocking")

    def __init__(self, codec: CallCodec, fn: HostFunction | None) -> None:
        c = codec.call
        self.codec = codec
        self.checks = CallChecks(c)
        self.fn = fn
        index = {f.name: i for i, f in enumerate(c.params)}
        self.resources = tuple((index[name], kind, c.params[index[name]].type) for name, kind in c.resources)
        self.handle_idx = self.checks.handles
        self.single = codec.nresults == 1
        self.blocking = c.blocking


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
        self.closed = False

    # -- the one entry point -------------------------------------------------------------------------------
    def serve(self, frame: bytes | memoryview) -> bytes | None:
        try:
            codec, seq, args = decode_request(frame)
        except WireError as exc:
            return self._refuse_frame(frame, exc)
        entry = self.entries[codec.number]
        try:
            result = self.perform(entry, args)
        except OSError as exc:
            return encode_error(codec.number, seq, _errno_of(exc))
        except Exception:  # a bug in a host function must not take the host down with it
            log.exception("host function %s failed", codec.call.name)
            return encode_error(codec.number, seq, errno.EIO)
        try:
            return encode_answer(codec, seq, (result,) if entry.single else (result or ()))
        except WireError:
            log.exception("host answer for %s does not fit the table", codec.call.name)
            return encode_error(codec.number, seq, errno.EIO)

    def perform(self, entry: Entry, args: tuple) -> Any:
        """Check and run one decoded request; raises OSError for an errno answer."""
        c = entry.codec.call
        if entry.fn is None or not self.access.call_allowed(c.name):
            raise OSError(errno.ENOSYS, f"{c.name} is not served by this host")
        problem = entry.checks.check_request(args)
        if problem:
            log.warning("enclave sent a bad %s request: %s", c.name, problem)
            raise OSError(errno.EINVAL, problem)
        if entry.handle_idx:
            args = self._resolve_handles(entry, args)
        for i, kind, t in entry.resources:
            self._check_resource(c, kind, args, i, t)
        for hook in self.before:
            err = hook(entry, args)
            if err:
                raise OSError(err, "injected")
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
                raise OSError(errno.EACCES, denial)

    def _refuse_frame(self, frame: bytes | memoryview, exc: WireError) -> bytes | None:
        log.warning("host rejected a malformed frame: %s", exc)
        if len(frame) >= HEADER_SIZE:
            _, _, kind, number, seq, _ = HEADER.unpack_from(frame, 0)
            if number in CODECS:
                return encode_error(number, seq, errno.EPROTO)
        return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.handles.close_all()


def _errno_of(exc: OSError) -> int:
    # An OSError without errno (a Python-level error) is reported as EIO rather than as "success".
    return exc.errno if isinstance(exc.errno, int) and exc.errno else errno.EIO


def implemented_calls() -> dict[str, bool]:
    """Which ocalls of the table have a host function (the support table and a completeness test use it)."""
    return {c.name: _family_functions(c) is not None for c in CALLS if c.number is not None}


__all__ = ["Host", "Handle", "Entry", "implemented_calls"]
