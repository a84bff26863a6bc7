"""Host-side fault injection, in the manner of strace's `-e inject=`.

A spec names calls and what to do to them:

    write:short                 every write transfers at most half of what it was given (short writes)
    read,recv:short=100:when=3+ from the 3rd call on, at most 100 bytes per call
    open:error=EACCES:when=3    only the 3rd open fails, with EACCES
    files:error=EINTR:when=2+5  the 2nd, 7th, 12th ... call of the files family fails with EINTR
    fsync:delay=50              every fsync is answered 50 ms late
    read:lie=oversize           every read is answered with a lie the enclave must refuse (ocall_bridge/lies.py)

CALL is a comma-separated list of call names and family names from `calls.py`.  `when=N` hits only the N-th
call, `N+` every call from the N-th on, `N+STEP` the N-th and every STEP-th after; without `when` every call is
hit.  Counting is per spec and per process, over the calls that reach the host.

Everything is decided by the untrusted host, which is the point: a real host can do all of this, and the enclave
must still deliver Python's semantics (a BufferedWriter completes its writes under short writes, `sendall`
sends everything, EINTR is retried where Python retries it).  Which calls can be shortened, and which errnos a
call may be made to fail with, come from the table: an errno the call cannot return would be refused by the
enclave as a host violation, so it is rejected here with a message instead (lying is the lying host's job).
"""

from __future__ import annotations

import errno as E
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import singledispatch
from typing import Any, NamedTuple

from . import lies
from . import types as T
from .calls import CALLS, FAMILIES, Call
from .wire import CODECS, CODECS_BY_NAME, HEADER, WireError, decode_answer, decode_request

PerformFn = Callable[[Any, tuple], Any]  # Host.perform(entry, args)
ServeFn = Callable[[bytes | memoryview], bytes | memoryview | None]  # Host.serve(frame) -> answer or None


class InjectSpecError(ValueError):
    """A fault-injection spec that cannot be used: the message says which part and why."""


@dataclass(frozen=True)
class Rule:
    calls: frozenset[str]
    error: int = 0  # errno to answer with (0: none)
    short: int = 0  # -1: half of the request; N > 0: at most N bytes per call; 0: not short
    delay_ms: float = 0.0
    lie: str = ""  # a kind from lies.KINDS: the answer is rewritten into that lie
    first: int = 1  # when=N...
    step: int = 0  # 0: only the first; >0: every step-th call from `first` on
    text: str = ""  # the spec as given, for messages and marks

    def hits(self, n: int) -> bool:
        """Whether the n-th (1-based) call matching this rule is hit."""
        if n < self.first:
            return False
        if self.step == 0:
            return n == self.first
        return (n - self.first) % self.step == 0


class Transfer(NamedTuple):
    """How a parameter states a transfer's size, and how to ask for less: a byte count asked for (read's
    `count`), or the bytes given (write's `data`)."""

    size: Callable[[Any], int]
    cut: Callable[[Any, int], Any]


@singledispatch
def _transfer(t: T.WireType) -> Transfer | None:
    return None


@_transfer.register
def _transfer_count(t: T.Int) -> Transfer:
    return Transfer(int, lambda v, n: n)


@_transfer.register
def _transfer_data(t: T.Bytes) -> Transfer:
    return Transfer(len, lambda v, n: memoryview(v)[:n])


def _short_index(c: Call) -> tuple[int, Transfer] | None:
    """Where a call's transfer size lives: the parameter named `count` or `data` that states one."""
    for i, f in enumerate(c.params):
        transfer = _transfer(f.type) if f.name in ("count", "data") else None
        if transfer is not None:
            return i, transfer
    return None


SHORTABLE: frozenset[str] = frozenset(c.name for c in CALLS if c.number is not None and _short_index(c))


def _errno_value(text: str) -> int:
    if text.isdigit():
        return int(text)
    value = getattr(E, text.upper(), None)
    if not isinstance(value, int):
        raise InjectSpecError(f"unknown errno {text!r} (use a name like EIO or ENOSPC, or a number)")
    return value


def _calls_named(words: str) -> tuple[frozenset[str], frozenset[str]]:
    """(every call named, the calls named one by one rather than through a family)."""
    names: set[str] = set()
    explicit: set[str] = set()
    wire = {c.name: c for c in CALLS if c.number is not None}
    for word in filter(None, (w.strip() for w in words.split(","))):
        if word in wire:
            names.add(word)
            explicit.add(word)
        elif word in FAMILIES:
            names.update(c.name for c in wire.values() if c.family == word)
        elif word == "all":
            names.update(wire)
        else:
            inside = next((c for c in CALLS if c.name == word), None)
            if inside is not None:
                raise InjectSpecError(f"{word} is served inside the enclave and never reaches the host")
            raise InjectSpecError(f"unknown call or family {word!r}")
    if not names:
        raise InjectSpecError("no call named")
    return frozenset(names), frozenset(explicit)


def parse(spec: str) -> Rule:
    """`CALL[,CALL...]:ACTION[:ACTION...]` -> Rule; raises InjectSpecError naming what is wrong."""
    parts = spec.split(":")
    if len(parts) < 2:
        raise InjectSpecError(f"{spec!r}: expected CALL:error=ERRNO, CALL:short or CALL:delay=MS")
    try:
        calls, explicit = _calls_named(parts[0])
    except InjectSpecError as exc:
        raise InjectSpecError(f"{spec!r}: {exc}") from None
    error = short = 0
    delay = 0.0
    lie = ""
    first, step = 1, 1
    when_given = False
    for part in parts[1:]:
        key, _, value = part.partition("=")
        try:
            if key == "error":
                error = _errno_value(value)
            elif key == "short":
                short = int(value) if value else -1
                if short == 0 or short < -1:
                    raise InjectSpecError("short=N needs N >= 1 bytes")
            elif key == "delay":
                delay = float(value)
                if not 0 <= delay <= 3_600_000:
                    raise InjectSpecError("delay is in milliseconds, 0 to 3600000")
            elif key == "lie":
                if value not in lies.KINDS:
                    raise InjectSpecError(f"unknown lie {value!r} (one of {', '.join(lies.KINDS)})")
                lie = value
            elif key == "when":
                when_given = True
                head, plus, tail = value.partition("+")
                first = int(head)
                step = (int(tail) if tail else 1) if plus else 0
                if first < 1 or step < 0 or (plus and tail and step < 1):
                    raise InjectSpecError("when=N[+[STEP]] needs N >= 1 and STEP >= 1")
            else:
                raise InjectSpecError(f"unknown action {key!r} (error=ERRNO, short[=N], delay=MS, lie=KIND, "
                                      f"when=N[+STEP])")
        except ValueError as exc:
            if isinstance(exc, InjectSpecError):
                raise InjectSpecError(f"{spec!r}: {exc}") from None
            raise InjectSpecError(f"{spec!r}: bad value in {part!r}") from None
    if not when_given:
        first, step = 1, 1
    if not (error or short or delay or lie):
        raise InjectSpecError(f"{spec!r}: nothing to inject (error=ERRNO, short[=N], delay=MS or lie=KIND)")
    if lie and (error or short):
        raise InjectSpecError(f"{spec!r}: a lie replaces the answer; it cannot be combined with error or short")
    if error and short:
        raise InjectSpecError(f"{spec!r}: a call either fails or is short, not both")
    # A call named one by one must be able to take the fault; a family contributes the calls of it that can.
    by_name = {c.name: c for c in CALLS}
    if short:
        cannot = sorted(explicit - SHORTABLE)
        if cannot or not calls & SHORTABLE:
            raise InjectSpecError(f"{spec!r}: {', '.join(cannot) or 'those calls'} transfer no bytes; short "
                                  f"applies to {', '.join(sorted(SHORTABLE))}")
        calls = calls & SHORTABLE
    if error:
        able = frozenset(n for n in calls if error in by_name[n].errnos)
        cannot = sorted(explicit - able)
        if cannot or not able:
            name = E.errorcode.get(error, str(error))
            raise InjectSpecError(f"{spec!r}: {', '.join(cannot) or 'no call named'} cannot fail with {name} "
                                  f"(the enclave would refuse that answer as a host violation)")
        calls = able
    if lie:
        able = frozenset(n for n in calls if lies.applies(lie, by_name[n]))
        cannot = sorted(explicit - able)
        if cannot or not able:
            raise InjectSpecError(f"{spec!r}: the table gives lie={lie} nothing to falsify in "
                                  f"{', '.join(cannot) or 'those calls'}")
        calls = able
    return Rule(calls, error, short, delay, lie, first, step, spec)


class Injector:
    """The rules of one host, applied in two places.

    Errors go through `Host.before` (after the host's own checks, so a bad handle is still EBADF and a denied
    path still denied: the injected failure is one the real call could have given).  Short transfers and delays
    wrap `Host.perform`, because they rewrite the request rather than replace the answer.
    """

    def __init__(self, rules: list[Rule], note: Callable[[str], None] | None = None) -> None:
        self.rules = rules
        self.note = note  # told about each injection (the tracer marks the call with it)
        self.injected = 0
        self._counters = [itertools.count(1) for _ in rules]  # next() on a count is atomic in CPython
        self._lock = threading.Lock()
        self.lied = 0  # answers rewritten into a lie
        self.lying = any(r.lie for r in rules)
        self._lie = threading.local()  # the lie decided for the call in progress on this thread
        self.issued: list[int] = []  # handles honest answers handed over (a badfd lie aliases the last one)
        # What stdio, replay and endless lies need of honest answers: the stdio handles ("stdio"), the last
        # successful answer of each call a replay rule names (("last", number)), the last page of each listing
        # (("page", handle)).  Only what a rule needs is kept.
        self.memory: dict[Any, Any] = {}
        kinds = {r.lie for r in rules}
        by_name = {c.name: c.number for c in CALLS if c.number is not None}
        self._replayed = {by_name[n] for r in rules if r.lie == "replay" for n in r.calls}
        self._keep_pages = "endless" in kinds
        self._keep_stdio = "stdio" in kinds
        self._swaps: dict[int, dict[str, Any]] = {}  # call number -> the answer waiting for a partner to swap with
        names = set().union(*(r.calls for r in rules)) if rules else set()
        self._by_call: dict[str, list[int]] = {n: [i for i, r in enumerate(rules) if n in r.calls] for n in names}

    def _due(self, name: str, want: Callable[[Rule], bool]) -> list[Rule]:
        hit = []
        for i in self._by_call.get(name, ()):
            rule = self.rules[i]
            if want(rule) and rule.hits(next(self._counters[i])):
                hit.append(rule)
        return hit

    def before(self, entry: Any, args: tuple) -> int | None:
        """Host.before hook: the errno to answer instead of performing the call, or None."""
        for rule in self._due(entry.codec.call.name, lambda r: bool(r.error)):
            self._count(f"INJECTED {E.errorcode.get(rule.error, rule.error)}")
            return rule.error
        return None

    def wrap(self, perform: PerformFn) -> PerformFn:
        """Host.perform with short transfers and delays applied, and lies decided (told later, on the encoded
        answer, by `wrap_serve`, on the same thread); a no-op wrapper for calls with no rule."""
        from .originals import time as real_time  # the host's clock, never the enclave's interposed one

        sleep = real_time.sleep
        by_call = self._by_call
        due = self._due

        def perform_injected(entry: Any, args: tuple) -> Any:
            c = entry.codec.call
            if c.name not in by_call:
                return perform(entry, args)
            for rule in due(c.name, lambda r: bool(r.short or r.delay_ms or r.lie)):
                if rule.lie:
                    if lies.wants(rule.lie, c, args):
                        self._lie.kind = rule.lie
                        self._count(f"INJECTED lie={rule.lie}")
                    continue
                if rule.delay_ms:
                    self._count(f"INJECTED delay={rule.delay_ms:g}ms")
                    sleep(rule.delay_ms / 1000)
                if rule.short:
                    args = self._shorten(c, args, rule.short)
            return perform(entry, args)

        return perform_injected

    def wrap_serve(self, serve: ServeFn) -> ServeFn:
        """Host.serve, with the answer of a call `perform_injected` chose to lie about rewritten into the lie.

        The lie is told on the encoded frame, after the honest call was performed: what the enclave receives
        is exactly what a malicious host could send.
        """
        state = self._lie
        issued = self.issued
        handle_calls = {n for n, c in CODECS.items() if lies.applies("badfd", c.call)}
        remember = self._remember
        watched = self._replayed | ({CODECS_BY_NAME["getdents"].number} if self._keep_pages else set()) | (
            {CODECS_BY_NAME["attach"].number} if self._keep_stdio else set())

        def serve_lying(frame: Any) -> Any:
            # Saved and restored: a call served while this one is performed (the sim backend's enclave writing
            # while the host resolves a name) must not clear the lie decided for this one.
            outer = getattr(state, "kind", None)
            state.kind = None
            answer = serve(frame)
            kind = state.kind
            state.kind = outer
            if answer is None:
                return answer
            number = frame[6] | frame[7] << 8 if len(frame) >= 8 else -1
            if kind is None:
                if number in handle_calls:
                    issued.extend(lies.issued_handles(CODECS[number], answer))
                if number in watched:
                    remember(frame, answer)
                return answer
            try:
                codec, _, args = decode_request(frame)
            except WireError:
                return answer
            if kind == "swap":
                forged = self._swap(number, bytes(answer))
            else:
                forged = lies.tell(kind, codec, args, answer, issued, self.memory)
            if forged is None:
                return answer
            with self._lock:
                self.lied += 1
            return forged

        return serve_lying

    def _remember(self, frame: Any, answer: Any) -> None:
        """Keep what a later stdio, replay or endless lie needs of this honest answer."""
        try:
            codec, seq, args = decode_request(frame)
            err, values = decode_answer(answer, codec, seq)
        except WireError:
            return
        if err:
            return
        with self._lock:
            if codec.number in self._replayed:
                self.memory[("last", codec.number)] = bytes(answer)
            if codec.call.name == "getdents" and values[0]:
                self.memory[("page", args[0])] = values[0]
            elif codec.call.name == "attach":
                self.memory["stdio"] = tuple(values)

    def _swap(self, number: int, answer: bytes) -> bytes | None:
        """Wait (up to lies.SWAP_WAIT_S) for another call of the same kind and exchange answers with it.

        Each side keeps its own header (call, sequence number) and takes the other's body and errno: what a host
        that mixes up two concurrent answers on purpose sends.  None: no partner came, answer honestly.
        """
        with self._lock:
            other = self._swaps.pop(number, None)
            if other is None:
                mine: dict[str, Any] = {"answer": answer, "done": threading.Event(), "theirs": None}
                self._swaps[number] = mine
        if other is not None:
            other["theirs"] = answer
            other["done"].set()
            return lies.with_seq(other["answer"], HEADER.unpack_from(answer, 0)[4])
        if not mine["done"].wait(lies.SWAP_WAIT_S):
            with self._lock:
                if self._swaps.get(number) is mine:
                    del self._swaps[number]
                    return None
            mine["done"].wait()
        return lies.with_seq(mine["theirs"], HEADER.unpack_from(answer, 0)[4])

    def _shorten(self, c: Call, args: tuple, short: int) -> tuple:
        where = _short_index(c)
        assert where is not None
        i, transfer = where
        size = transfer.size(args[i])
        if size <= 1:
            return args  # nothing shorter than one byte is still a transfer
        new = max(1, size // 2) if short < 0 else min(size, short)
        if new == size:
            return args
        self._count(f"INJECTED short {new} of {size}")
        out = list(args)
        out[i] = transfer.cut(args[i], new)
        return tuple(out)

    def _count(self, mark: str) -> None:
        with self._lock:
            self.injected += 1
        if self.note is not None:
            self.note(mark)


__all__ = ["InjectSpecError", "Injector", "Rule", "SHORTABLE", "parse"]
