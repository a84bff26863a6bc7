"""The wire format under property tests: every call round-trips, and no byte string breaks a decoder.

Values are generated from the field types of ocall_bridge/calls.py (struct ranges, lo/hi, bounds tied to the
request), so a new row in the table is covered without touching this file.  Bad input - random bytes, valid
frames truncated, flipped, with lying length fields or huge declared sizes - must end in `WireError` and
nothing else, and must never make the decoder allocate what a frame merely claims.

The default profile is quick enough for CI; `POSIX_SHIM_FUZZ=long` runs many more examples.
"""

from __future__ import annotations

import os
import struct
import tracemalloc
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocall_bridge import types as T
from ocall_bridge import wire
from ocall_bridge.validate import CallChecks

# -- profiles ----------------------------------------------------------------------------------------------

settings.register_profile("posix_shim-quick", max_examples=30, deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("posix_shim-long", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = os.environ.get("POSIX_SHIM_FUZZ", "") == "long"
# Applied per test rather than loaded globally, so other test files keep their own hypothesis settings.
FUZZ = settings.get_profile("posix_shim-long" if LONG else "posix_shim-quick")
FUZZ_MORE = settings(FUZZ, max_examples=FUZZ.max_examples * (3 if LONG else 10))

# Generated blobs stay small (the limits themselves are tested with explicit examples below).
BLOB_CAP = 2048 if LONG else 64
LIST_CAP = 32 if LONG else 4

INT_RANGE = {
    "b": (-(2**7), 2**7 - 1), "B": (0, 2**8 - 1), "h": (-(2**15), 2**15 - 1), "H": (0, 2**16 - 1),
    "i": (-(2**31), 2**31 - 1), "I": (0, 2**32 - 1), "q": (-(2**63), 2**63 - 1), "Q": (0, 2**64 - 1),
}

NAMES = sorted(wire.CODECS_BY_NAME)


# -- strategies derived from the table ----------------------------------------------------------------------


def _bound_value(b: T.Bound | None, params: Sequence[T.Field], args: Sequence[Any] | None) -> int | None:
    """The limit a Bound puts on a value, given the request's arguments (None when it cannot be known yet)."""
    if b is None or args is None:
        return None
    names = [f.name for f in params]
    if b.name not in names or names.index(b.name) >= len(args):
        return None
    value = args[names.index(b.name)]
    return value if b.kind == "arg" else len(value)


def strategy_for(t: T.WireType, params: Sequence[T.Field] = (), args: Sequence[Any] | None = None
                 ) -> st.SearchStrategy[Any]:
    """Values of type `t` that a well-behaved peer may send (every range and bound respected)."""
    if isinstance(t, T.Int):
        lo, hi = INT_RANGE[t.code]
        if t.lo is not None:
            lo = max(lo, t.lo)
        if t.hi is not None:
            hi = min(hi, t.hi)
        bound = _bound_value(t.bound, params, args)
        if bound is not None:
            hi = min(hi, bound)
        return st.integers(lo, hi)
    if isinstance(t, T.Float):
        return st.floats(min_value=t.lo, allow_nan=False)
    if isinstance(t, T.Bool):
        return st.booleans()
    if isinstance(t, T.Bytes):
        cap = min(t.max, BLOB_CAP)
        bound = _bound_value(t.bound, params, args)
        if bound is not None:
            cap = min(cap, bound)
        return st.binary(max_size=max(cap, 0))
    if isinstance(t, T.Path):
        return st.binary(max_size=min(t.max, BLOB_CAP)).map(lambda b: b.replace(b"\0", b"/"))
    if isinstance(t, T.Text):
        # t.max counts UTF-8 bytes: at most 4 per character.
        chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")
        return st.text(chars, max_size=min(t.max // 4, BLOB_CAP))
    if isinstance(t, T.Record):
        return st.tuples(*(strategy_for(f.type, params, args) for f in t.fields))
    if isinstance(t, T.List):
        cap = min(t.max, LIST_CAP)
        bound = _bound_value(t.bound, params, args)
        if bound is not None:
            cap = min(cap, bound)
        return st.lists(strategy_for(t.item, params, args), max_size=max(cap, 0))
    raise AssertionError(f"no strategy for wire type {t!r}: teach tests/test_wire.py about it")


@st.composite
def requests(draw: st.DrawFn, codec: wire.CallCodec) -> tuple:
    params = codec.call.params
    args: list[Any] = []
    for f in params:
        args.append(draw(strategy_for(f.type, params, args)))
    return tuple(args)


@st.composite
def answers(draw: st.DrawFn, codec: wire.CallCodec, args: tuple) -> tuple:
    params = codec.call.params
    return tuple(draw(strategy_for(f.type, params, args)) for f in codec.call.results)


@st.composite
def valid_frames(draw: st.DrawFn) -> tuple[wire.CallCodec, int, bytes, bool]:
    """(codec, seq, frame, is_request) for any call, request or answer."""
    codec = wire.CODECS_BY_NAME[draw(st.sampled_from(NAMES))]
    seq = draw(st.integers(0, 2**32 - 1))
    args = draw(requests(codec))
    if draw(st.booleans()):
        return codec, seq, wire.encode_request(codec, seq, args), True
    results = draw(answers(codec, args))
    return codec, seq, wire.encode_answer(codec, seq, results), False


# -- where the lengths are in a frame -------------------------------------------------------------------


def length_fields(layout: wire.Layout, buf: bytes, base: int = 0, end: int | None = None) -> list[int]:
    """Offsets of every u32 length (and list count) in a frame laid out as `layout`, nested ones included."""
    end = len(buf) if end is None else end
    out = []
    lens_at = base + layout.size - 4 * layout.nvar
    lens = struct.unpack_from(f"<{layout.nvar}I", buf, lens_at)
    out += [lens_at + 4 * k for k in range(layout.nvar)]
    pos = base + layout.size
    for n, i in zip(lens, layout.var_idx, strict=True):
        t = layout.fields[i].type
        if isinstance(t, T.Record):
            out += length_fields(wire._record_layout(t), buf, pos, pos + n)
        elif isinstance(t, T.List):
            item = wire._record_layout(t.item)
            out.append(pos)  # the record count
            (count,) = struct.unpack_from("<I", buf, pos)
            p = pos + 4
            for _ in range(count):
                out.append(p)  # the record's own size
                (size,) = struct.unpack_from("<I", buf, p)
                out += length_fields(item, buf, p + 4, p + 4 + size)
                p += 4 + size
        pos += n
    return out


def decode_both(frame: bytes | bytearray | memoryview, codec: wire.CallCodec, seq: int) -> None:
    """Feed a frame to both decoders: a result or WireError is fine, anything else fails the test.

    For random frames only, which may well be valid (a flipped data byte): a frame known to be broken goes to
    `refused_by` instead, which accepts nothing but a WireError."""
    for decode in (lambda: wire.decode_request(frame), lambda: wire.decode_answer(frame, codec, seq)):
        try:
            decode()
        except wire.WireError:
            pass


def refused_by(decode: Any, frame: bytes | bytearray | memoryview, why: str) -> None:
    """`decode(frame)` must raise WireError: a decode that succeeds fails the test (with `why`)."""
    try:
        got = decode(frame)
    except wire.WireError:
        return
    pytest.fail(f"{why}: decoded as {got!r:.200}")


def _with_length(frame: bytes, length: int) -> bytes:
    return struct.pack("<I", length & 0xFFFFFFFF) + frame[4:]


@pytest.mark.parametrize("name", NAMES)
def test_a_header_length_other_than_the_frame_is_refused(name: str) -> None:
    """The header's length must be the bytes received, exactly: shorter, longer, or a body cut or extended
    without the header agreeing, each is refused by both decoders (the fast path and the generic one)."""
    codec = wire.CODECS_BY_NAME[name]
    args, results = _sample_values(codec)
    for frame, decode in ((wire.encode_request(codec, 1, args), wire.decode_request),
                          (wire.encode_answer(codec, 1, results), lambda f: wire.decode_answer(f, codec, 1))):
        for delta in (-1, 1, 4, -4, 2**31):
            refused_by(decode, _with_length(frame, len(frame) + delta), f"{name}: header length {delta:+}")
        refused_by(decode, frame + b"\0", f"{name}: one byte more than the header says")
        refused_by(decode, frame[:-1], f"{name}: one byte less than the header says")


def test_a_field_longer_than_its_type_allows_is_refused_even_when_every_length_agrees() -> None:
    """A path of PATH_MAX bytes, a name of 256, text over its limit: the frame is consistent, the field is not."""
    for name, args, at in (("stat", (b"/" * 4096,), 0), ("open", (b"/" * 4096, 0, 0), 0),
                           ("gethostname", None, 256), ("getlogin", None, 257)):
        codec = wire.CODECS_BY_NAME[name]
        if args is not None:  # a request: built with the limit lifted, as a hostile enclave would
            layout = codec.request
            blob = args[0]
            body = layout.struct.pack(0, *([0] * 5), *args[1:], len(blob))[16:] + blob
            frame = wire.HEADER.pack(16 + len(body), wire.WIRE_VERSION, wire.REQUEST, codec.number, 1, 0) + body
            refused_by(wire.decode_request, frame, f"{name}: a path of {len(blob)} bytes")
        else:
            blob = b"a" * at
            body = struct.pack("<I", len(blob)) + blob
            frame = wire.HEADER.pack(16 + len(body), wire.WIRE_VERSION, wire.ANSWER, codec.number, 1, 0) + body
            refused_by(lambda f, c=codec: wire.decode_answer(f, c, 1), frame, f"{name}: {at} bytes of text")


@pytest.mark.parametrize("name", NAMES)
def test_trailing_bytes_are_refused_even_when_the_header_counts_them(name: str) -> None:
    """Bytes after the last field, with the header length adjusted to include them: the declared field lengths
    must account for the body exactly.  And inside a record or list: one byte more than its fields need."""
    codec = wire.CODECS_BY_NAME[name]
    args, results = _sample_values(codec)
    for layout, frame, decode in (
            (codec.request, wire.encode_request(codec, 1, args), wire.decode_request),
            (codec.answer, wire.encode_answer(codec, 1, results), lambda f: wire.decode_answer(f, codec, 1))):
        for tail in (b"\0", b"\xff" * 3, b"\0" * 8):
            longer = frame + tail
            refused_by(decode, _with_length(longer, len(longer)), f"{name}: {len(tail)} trailing bytes")
        if layout.nvar and not isinstance(layout.fields[layout.var_idx[-1]].type, T.Bytes | T.Path | T.Text):
            # The last blob is a record or a list: one byte more in it (its length and the header agreeing).
            grown = bytearray(frame + b"\0")
            at = layout.size - 4
            struct.pack_into("<I", grown, at, struct.unpack_from("<I", grown, at)[0] + 1)
            refused_by(decode, _with_length(bytes(grown), len(grown)), f"{name}: a record with a trailing byte")


# -- round trips -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.data(), seq=st.integers(0, 2**32 - 1))
def test_every_call_round_trips(name: str, data: st.DataObject, seq: int) -> None:
    codec = wire.CODECS_BY_NAME[name]
    checks = CallChecks(codec.call)
    args = data.draw(requests(codec), label="args")
    frame = wire.encode_request(codec, seq, args)
    assert struct.unpack_from("<I", frame)[0] == len(frame) <= T.MAX_FRAME
    got_codec, got_seq, got_args = wire.decode_request(frame)
    assert (got_codec, got_seq, got_args) == (codec, seq, args)
    # A request generated inside every declared range is one the host's checks accept.
    assert checks.check_request(got_args) is None

    results = data.draw(answers(codec, args), label="results")
    frame = wire.encode_answer(codec, seq, results)
    assert struct.unpack_from("<I", frame)[0] == len(frame) <= T.MAX_FRAME
    err, got = wire.decode_answer(frame, codec, seq)
    assert err == 0
    assert got == results
    # Inside every declared range; the relations of calls.RULES (a file type, a power of two) are more than a
    # range, and tests/test_validate.py proves them.
    assert checks.check_ranges(args, got) is None
    # The same frame decoded from a memoryview (what a transport may hand over) gives the same values.
    assert wire.decode_answer(memoryview(frame), codec, seq) == (0, results)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(seq=st.integers(0, 2**32 - 1), err=st.integers(-(2**31), 2**31 - 1).filter(bool))
def test_error_answers_round_trip(name: str, seq: int, err: int) -> None:
    codec = wire.CODECS_BY_NAME[name]
    frame = wire.encode_error(codec.number, seq, err)
    assert len(frame) == wire.HEADER_SIZE
    assert wire.decode_answer(frame, codec, seq) == (err, ())


def test_the_header_is_sixteen_bytes_little_endian() -> None:
    codec = wire.CODECS_BY_NAME["close"]
    frame = wire.encode_request(codec, 0x01020304, (7,))
    assert frame == (struct.pack("<IBBHIi", 24, 1, wire.REQUEST, codec.number, 0x01020304, 0)
                     + struct.pack("<q", 7))
    assert wire.HEADER_SIZE == 16


def test_fixed_fields_come_first_then_lengths_then_data() -> None:
    codec = wire.CODECS_BY_NAME["pwrite"]  # fd (q), data (bytes), offset (q)
    frame = wire.encode_request(codec, 9, (5, b"hello", 100))
    body = frame[wire.HEADER_SIZE:]
    assert body == struct.pack("<qqI", 5, 100, 5) + b"hello"


# -- the limits, exactly -----------------------------------------------------------------------------------


def test_the_largest_chunk_fits_and_one_byte_more_is_refused() -> None:
    write = wire.CODECS_BY_NAME["write"]
    frame = wire.encode_request(write, 1, (3, b"x" * T.MAX_DATA))
    assert len(frame) <= T.MAX_FRAME
    assert wire.decode_request(frame)[2] == (3, b"x" * T.MAX_DATA)
    with pytest.raises(wire.WireError):
        wire.encode_request(write, 1, (3, b"x" * (T.MAX_DATA + 1)))
    read = wire.CODECS_BY_NAME["read"]
    with pytest.raises(wire.WireError):
        wire.encode_answer(read, 1, (b"x" * (T.MAX_DATA + 1),))


def test_a_path_of_path_max_is_refused() -> None:
    stat = wire.CODECS_BY_NAME["stat"]
    assert wire.decode_request(wire.encode_request(stat, 1, (b"/" + b"a" * (T.MAX_PATH - 2),)))
    with pytest.raises(wire.WireError):
        wire.encode_request(stat, 1, (b"/" + b"a" * (T.MAX_PATH - 1),))
    with pytest.raises(wire.WireError):
        wire.encode_request(stat, 1, (b"/a\0b",))


def test_a_frame_over_the_hard_maximum_is_refused_before_its_body_is_read() -> None:
    codec = wire.CODECS_BY_NAME["write"]
    frame = bytearray(wire.encode_request(codec, 1, (3, b"")))
    big = frame + bytes(T.MAX_FRAME + 1 - len(frame))
    struct.pack_into("<I", big, 0, len(big))
    with pytest.raises(wire.WireError, match="limit"):
        wire.decode_request(bytes(big))


@pytest.mark.parametrize("value", [-1, 2**63, "3", None, 1.5])
def test_values_the_wire_cannot_carry_are_a_wire_error(value: object) -> None:
    codec = wire.CODECS_BY_NAME["close"]
    if value == -1:  # in range for the struct; only the validator objects
        wire.encode_request(codec, 1, (value,))
        return
    with pytest.raises(wire.WireError):
        wire.encode_request(codec, 1, (value,))


def test_wrong_number_of_values_is_a_wire_error() -> None:
    with pytest.raises(wire.WireError):
        wire.encode_request(wire.CODECS_BY_NAME["close"], 1, ())
    with pytest.raises(wire.WireError):
        wire.encode_answer(wire.CODECS_BY_NAME["stat"], 1, ((1, 2),))


def test_a_two_dimensional_buffer_is_sent_whole() -> None:
    codec = wire.CODECS_BY_NAME["write"]
    grid = memoryview(bytearray(b"abcdef")).cast("B", (2, 3))
    frame = wire.encode_request(codec, 1, (3, grid))
    assert wire.decode_request(frame)[2] == (3, b"abcdef")


# -- what a decoder refuses ------------------------------------------------------------------------------


def test_an_answer_for_another_call_or_sequence_is_refused() -> None:
    read, write = wire.CODECS_BY_NAME["read"], wire.CODECS_BY_NAME["write"]
    frame = wire.encode_answer(read, 7, (b"abc",))
    with pytest.raises(wire.WireError, match="expected"):
        wire.decode_answer(frame, write, 7)
    with pytest.raises(wire.WireError, match="sequence"):
        wire.decode_answer(frame, read, 8)
    with pytest.raises(wire.WireError, match="expected an answer"):
        wire.decode_answer(wire.encode_request(read, 7, (3, 10)), read, 7)
    with pytest.raises(wire.WireError, match="expected a request"):
        wire.decode_request(frame)


def test_unknown_call_version_and_kind_are_refused() -> None:
    frame = bytearray(wire.encode_request(wire.CODECS_BY_NAME["close"], 1, (3,)))
    for offset, fmt, value, words in ((6, "<H", 65000, "unknown call"), (4, "<B", 2, "version"),
                                      (5, "<B", 9, "kind")):
        bad = bytearray(frame)
        struct.pack_into(fmt, bad, offset, value)
        with pytest.raises(wire.WireError, match=words):
            wire.decode_request(bytes(bad))


def test_a_failed_answer_with_a_body_and_a_request_with_errno_are_refused() -> None:
    codec = wire.CODECS_BY_NAME["read"]
    frame = bytearray(wire.encode_answer(codec, 1, (b"abc",)))
    struct.pack_into("<i", frame, 12, 5)
    with pytest.raises(wire.WireError, match="body"):
        wire.decode_answer(bytes(frame), codec, 1)
    req = bytearray(wire.encode_request(codec, 1, (3, 4)))
    struct.pack_into("<i", req, 12, 5)
    with pytest.raises(wire.WireError, match="errno"):
        wire.decode_request(bytes(req))


def test_invalid_text_and_paths_with_nul_are_refused() -> None:
    codec = wire.CODECS_BY_NAME["gethostname"]
    good = wire.encode_answer(codec, 1, ("ab",))
    for body in (b"\xff\xfe", b"a\0"):
        bad = good[:-2] + body
        with pytest.raises(wire.WireError):
            wire.decode_answer(bad, codec, 1)
    stat = wire.CODECS_BY_NAME["stat"]
    good = wire.encode_request(stat, 1, (b"/ab",))
    with pytest.raises(wire.WireError, match="NUL"):
        wire.decode_request(good[:-1] + b"\0")


# -- fuzzing both decoders -----------------------------------------------------------------------------


@FUZZ_MORE
@given(frame=st.binary(max_size=256), name=st.sampled_from(NAMES), seq=st.integers(0, 2**32 - 1))
def test_random_bytes_are_a_wire_error(frame: bytes, name: str, seq: int) -> None:
    decode_both(frame, wire.CODECS_BY_NAME[name], seq)


@FUZZ_MORE
@given(name=st.sampled_from(NAMES), kind=st.sampled_from(wire.KINDS), seq=st.integers(0, 2**32 - 1),
       err=st.sampled_from([0, 0, 2, -1]), body=st.binary(max_size=512))
def test_random_bodies_behind_a_valid_header_are_a_wire_error(name: str, kind: int, seq: int, err: int,
                                                              body: bytes) -> None:
    """A correct header gets random bytes past the header checks into the body decoders."""
    codec = wire.CODECS_BY_NAME[name]
    frame = wire.HEADER.pack(wire.HEADER_SIZE + len(body), wire.WIRE_VERSION, kind, codec.number, seq, err) + body
    decode_both(frame, codec, seq)


MUTATIONS = ("truncate", "flip", "set_u32", "set_length", "append", "header_length")
HUGE = (0, 1, 2, 3, 4, 255, 2**16, T.MAX_DATA, T.MAX_DATA + 1, T.MAX_FRAME, 2**31 - 1, 2**31, 2**32 - 1)


@FUZZ_MORE
@given(valid=valid_frames(), data=st.data())
def test_mutated_frames_are_a_wire_error(valid: tuple, data: st.DataObject) -> None:
    codec, seq, frame, is_request = valid
    buf = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        how = data.draw(st.sampled_from(MUTATIONS), label="how")
        if how == "truncate" and buf:
            del buf[data.draw(st.integers(0, len(buf) - 1), label="at"):]
        elif how == "flip" and buf:
            at = data.draw(st.integers(0, len(buf) - 1), label="at")
            buf[at] ^= data.draw(st.integers(1, 255), label="mask")
        elif how == "set_u32" and len(buf) >= 4:
            at = data.draw(st.integers(0, len(buf) - 4), label="at")
            struct.pack_into("<I", buf, at, data.draw(st.sampled_from(HUGE), label="value"))
        elif how == "set_length" and bytes(buf) == frame:
            layout = codec.request if is_request else codec.answer
            offsets = length_fields(layout, frame)
            if offsets:
                at = data.draw(st.sampled_from(offsets), label="length at")
                struct.pack_into("<I", buf, at, data.draw(st.sampled_from(HUGE), label="value"))
        elif how == "append":
            buf += data.draw(st.binary(min_size=1, max_size=16), label="tail")
        elif how == "header_length" and len(buf) >= 4:
            struct.pack_into("<I", buf, 0, len(buf))  # a consistent header length takes the body further
    decode_both(bytes(buf), codec, seq)
    decode_both(memoryview(buf), codec, seq)


# -- no allocation of a claimed size ----------------------------------------------------------------------


def _peak_while(fn: Any) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        try:
            fn()
        except wire.WireError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _sample_values(codec: wire.CallCodec) -> tuple[tuple, tuple]:
    """A request and an answer with every list non-empty, so every nested length exists in the frame."""

    def value(t: T.WireType) -> Any:
        if isinstance(t, T.Int):
            lo, hi = INT_RANGE[t.code]
            lo = lo if t.lo is None else max(lo, t.lo)
            hi = hi if t.hi is None else min(hi, t.hi)
            return min(max(1, lo), hi)
        if isinstance(t, T.Float):
            return 1.0
        if isinstance(t, T.Bool):
            return True
        if isinstance(t, T.Bytes | T.Path):
            return b"/a"
        if isinstance(t, T.Text):
            return "ab"
        if isinstance(t, T.Record):
            return tuple(value(f.type) for f in t.fields)
        if isinstance(t, T.List):
            return [value(t.item)]
        raise AssertionError(t)

    return tuple(value(f.type) for f in codec.call.params), tuple(value(f.type) for f in codec.call.results)


@pytest.mark.parametrize("name", NAMES)
def test_huge_declared_lengths_allocate_nothing(name: str) -> None:
    codec = wire.CODECS_BY_NAME[name]
    args, results = _sample_values(codec)
    for layout, frame in ((codec.request, wire.encode_request(codec, 1, args)),
                          (codec.answer, wire.encode_answer(codec, 1, results))):
        for at in length_fields(layout, frame):
            for claimed in (T.MAX_DATA, T.MAX_FRAME, 2**31, 2**32 - 1):
                bad = bytearray(frame)
                struct.pack_into("<I", bad, at, claimed)
                bad = bytes(bad)
                peak = _peak_while(lambda bad=bad: decode_both(bad, codec, 1))
                assert peak < 64 * 1024, f"{name}: length at {at} claiming {claimed} made the decoder use {peak} B"
                with pytest.raises(wire.WireError):
                    (wire.decode_request if layout is codec.request else
                     lambda f: wire.decode_answer(f, codec, 1))(bad)


def test_a_header_claiming_a_huge_frame_allocates_nothing() -> None:
    codec = wire.CODECS_BY_NAME["read"]
    frame = bytearray(wire.encode_request(codec, 1, (3, 10)))
    struct.pack_into("<I", frame, 0, 2**32 - 1)
    peak = _peak_while(lambda: decode_both(bytes(frame), codec, 1))
    assert peak < 64 * 1024


def test_a_list_claiming_more_records_than_fit_allocates_nothing() -> None:
    codec = wire.CODECS_BY_NAME["getdents"]
    frame = bytearray(wire.encode_answer(codec, 1, ([(b"a", 8, 1)],)))
    count_at = codec.answer.size  # the header and the one u32 length come first, then the list's count
    assert struct.unpack_from("<I", frame, count_at)[0] == 1
    for claimed in (2, 1024, 1025, 2**32 - 1):
        struct.pack_into("<I", frame, count_at, claimed)
        with pytest.raises(wire.WireError, match="count"):
            wire.decode_answer(bytes(frame), codec, 1)
        assert _peak_while(lambda: wire.decode_answer(bytes(frame), codec, 1)) < 64 * 1024
