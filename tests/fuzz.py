"""Fuzzing at scale: `python -m tests.fuzz --examples N [--seed S] [--targets request,answer,host]`.

Three targets, N examples each, from a seeded plain random generator (fast enough for millions of examples; the
hypothesis-driven fuzz tests in test_wire.py and test_lies.py shrink failures, this one counts):

* `request`: `wire.decode_request` on frames one to four mutations away from an honest request of a random call
  (bytes flipped, cut, appended, a length field set to an edge value, the header length made consistent), on
  random bodies behind a valid header, and on plain random bytes.  A result or `WireError`; anything else is an
  unexpected exception.
* `answer`: `wire.decode_answer` the same way, from honest answers.
* `host`: `Host.serve` on those request frames, through the whole dispatch (decoding, range checks, handle
  table, policy re-check, encoding) with every host function replaced by one that answers a well-formed result
  (so no random frame ever touches the real filesystem or network).  `serve` must never raise, and whatever it
  answers must be None (a frame too broken to answer) or an answer frame the enclave's decoder accepts for
  the call number it names.

Each target reports examples run, how many decoded, how many were refused, and unexpected exceptions (with the
first few tracebacks); the exit status is 1 when there was any unexpected one.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ocall_bridge import lies
from ocall_bridge import types as T
from ocall_bridge.access import Access
from ocall_bridge.calls import CALLS
from ocall_bridge.host.runtime import Host
from ocall_bridge.wire import CODECS, HEADER, HEADER_SIZE, KINDS, WIRE_VERSION, WireError, decode_answer, decode_request

WIRE = sorted(CODECS)
EDGES = (0, 1, 2, 3, 4, 255, 256, 1 << 16, T.MAX_DATA, T.MAX_DATA + 1, T.MAX_FRAME, 2**31 - 1, 2**31, 2**32 - 1)


def _sample(t: Any, rnd: random.Random) -> Any:
    """A well-formed value of type t, varied a little (lies.well_formed is the fixed one)."""
    if isinstance(t, T.Int):
        lo = t.lo if t.lo is not None else -5
        hi = t.hi if t.hi is not None else 1 << 20
        return rnd.randint(max(lo, -(1 << 31)), max(min(hi, lo + (1 << 20)), lo)) if t.code.islower() else \
            rnd.randint(max(lo, 0), max(min(hi, 1 << 20), max(lo, 0)))
    if isinstance(t, T.Bytes):
        return bytes(rnd.randrange(256) for _ in range(rnd.randint(0, min(t.max, 12))))
    if isinstance(t, T.Path):
        return b"/" + bytes(rnd.choice(b"abc/.") for _ in range(rnd.randint(0, 12)))
    if isinstance(t, T.Text):
        return "".join(rnd.choice("ab.:1") for _ in range(rnd.randint(0, min(t.max, 8))))
    if isinstance(t, T.Record):
        return tuple(_sample(f.type, rnd) for f in t.fields)
    if isinstance(t, T.List):
        return [_sample(t.item, rnd) for _ in range(rnd.randint(0, min(t.max, 3)))]
    return lies.well_formed(t)


def _honest(number: int, rnd: random.Random, answer: bool) -> bytes:
    codec = CODECS[number]
    fields = codec.call.results if answer else codec.call.params
    seq = rnd.randrange(1 << 32)
    for _ in range(5):
        try:
            values = [_sample(f.type, rnd) for f in fields]
            return (codec.pack_answer if answer else codec.pack_request)(seq, values)
        except WireError:
            continue  # a sampled value the wire cannot carry (a text of the wrong charset): sample again
    values = [lies.well_formed(f.type) for f in fields]
    return (codec.pack_answer if answer else codec.pack_request)(seq, values)


def _mutate(frame: bytes, rnd: random.Random) -> bytes:
    b = bytearray(frame)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(6)
        if op == 0 and b:
            b[rnd.randrange(len(b))] ^= rnd.randint(1, 255)
        elif op == 1:
            del b[rnd.randrange(len(b) + 1):]
        elif op == 2:
            b += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        elif op == 3 and len(b) >= 4:
            at = rnd.randrange(len(b) - 3)
            b[at:at + 4] = rnd.choice(EDGES).to_bytes(4, "little")
        elif op == 4 and len(b) >= 4:
            b[0:4] = len(b).to_bytes(4, "little")  # a consistent header length takes the body further
        elif op == 5 and len(b) > HEADER_SIZE:
            at = rnd.randrange(HEADER_SIZE, len(b))
            b[at:at] = bytes(rnd.randint(1, 4))
    return bytes(b)


def frame_for(rnd: random.Random, answer: bool) -> tuple[bytes, int, int]:
    """(frame, call number, sequence number) to decode: mostly mutated honest frames."""
    number = rnd.choice(WIRE)
    honest = _honest(number, rnd, answer)
    seq = HEADER.unpack_from(honest, 0)[4]
    r = rnd.random()
    if r < 0.80:
        return _mutate(honest, rnd), number, seq
    if r < 0.95:
        body = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 64)))
        kind = rnd.choice(KINDS)
        err = rnd.choice((0, 0, 0, 5, -3))
        return HEADER.pack(HEADER_SIZE + len(body), WIRE_VERSION, kind, number, seq, err) + body, number, seq
    return bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 48))), number, seq


@dataclass
class Tally:
    target: str
    examples: int = 0
    decoded: int = 0
    refused: int = 0
    unexpected: int = 0
    tracebacks: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        return (f"{self.target:<8} examples {self.examples:>10,}  decoded {self.decoded:>9,}  refused "
                f"{self.refused:>10,}  unexpected {self.unexpected}  ({self.seconds:.1f} s)")


def _fake_host() -> Host:
    """A Host whose every function answers a well-formed result: the dispatch is real, the world untouched."""
    host = Host(Access())
    for entry in host.entries.values():
        results = entry.codec.call.results
        value = [lies.well_formed(f.type) for f in results]
        answer: Any = None if not results else (value[0] if len(results) == 1 else tuple(value))
        entry.fn = (lambda *a, _v=answer: _v)
        entry.fn_into = None
    return host


def _run_target(target: str, examples: int, rnd: random.Random) -> Tally:
    tally = Tally(target)
    started = time.monotonic()
    host = _fake_host() if target == "host" else None
    for _ in range(examples):
        frame, number, seq = frame_for(rnd, answer=target == "answer")
        tally.examples += 1
        try:
            if target == "request":
                decode_request(frame)
            elif target == "answer":
                decode_answer(frame, CODECS[number], seq)
            else:
                assert host is not None
                # A handle the fake host issued, so handle arguments sometimes resolve and reach the function.
                if rnd.random() < 0.01:
                    host.handles.add(-1, "file")
                out = host.serve(frame)
                if out is None:
                    tally.refused += 1
                    continue
                out = bytes(out)
                answered = HEADER.unpack_from(out, 0)
                err, _ = decode_answer(out, CODECS[answered[3]], answered[4])
                if err:
                    tally.refused += 1
                    continue
            tally.decoded += 1
        except WireError:
            if target == "host":
                tally.unexpected += 1  # the host answered a frame its own enclave would refuse
                if len(tally.tracebacks) < 3:
                    tally.tracebacks.append(f"frame {frame!r:.300}\n{traceback.format_exc()}")
            else:
                tally.refused += 1
        except Exception:
            tally.unexpected += 1
            if len(tally.tracebacks) < 3:
                tally.tracebacks.append(f"frame {frame!r:.300}\n{traceback.format_exc()}")
    tally.seconds = time.monotonic() - started
    return tally


def run(examples: int, seed: int = 0, targets: tuple[str, ...] = ("request", "answer", "host"),
        out: Callable[[str], None] | None = None) -> list[Tally]:
    say = out or (lambda s: print(s, flush=True))
    # The host logs every malformed frame it refuses: millions of warnings would be the whole output.  The level
    # is put back afterwards (run inside pytest, later tests read the host's log).
    logger = logging.getLogger("posix_shim.host")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    tallies = []
    try:
        for target in targets:
            tally = _run_target(target, examples, random.Random(f"{seed}-{target}"))
            say(tally.line())
            for tb in tally.tracebacks:
                say(tb)
            tallies.append(tally)
    finally:
        logger.setLevel(level)
    return tallies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="examples per target (10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", default="request,answer,host", help="request,answer,host")
    args = parser.parse_args(argv)
    targets = tuple(t for t in args.targets.split(",") if t)
    unknown = set(targets) - {"request", "answer", "host"}
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    tallies = run(args.examples, args.seed, targets)
    return 1 if any(t.unexpected for t in tallies) else 0


# Every wire call has a fake answer the codecs accept (checked at import, so a new row cannot break the fuzzer).
assert all(c.number is None or c.number in CODECS for c in CALLS)

if __name__ == "__main__":
    sys.exit(main())
