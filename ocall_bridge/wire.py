"""Frames <-> bytes, derived from the ocall table.  Nothing here knows any particular call.

A frame is a 16-byte header followed by the body (docs/wire-format.md has the byte diagram):

    offset 0  u32  length    whole frame, header included; at most MAX_FRAME
           4  u8   version   WIRE_VERSION
           5  u8   kind      REQUEST, ANSWER, ECALL, ECALL_RETURN
           6  u16  call      the call number from calls.py
           8  u32  sequence  matches an answer to its request
          12  i32  errno     0 in requests and successful answers; the error in failed answers (body empty)

The body holds the fields of the request (parameters) or the answer (results): first every fixed-size field in
table order, then one u32 length for each variable-size field, all little-endian in one struct; then the bytes
of the variable-size fields in table order.  Records and lists are variable-size blobs with the same layout
inside (a list is a u32 count followed by its records).

Decoding trusts nothing: the header length must equal the bytes received, every declared length is checked
against the type's maximum and against what remains *before* anything is sliced, the lengths must account for
the body exactly, and names must be valid.  Any failure is a `WireError` - never a struct.error, IndexError or
an allocation of a claimed size.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from functools import singledispatch
from typing import Any, NamedTuple

from . import types as T
from .calls import BY_NUMBER, CALLS, Call
from .conform import Conforming
from .errors import require

WIRE_VERSION = 1
REQUEST, ANSWER, ECALL, ECALL_RETURN = 1, 2, 3, 4
KINDS = (REQUEST, ANSWER, ECALL, ECALL_RETURN)

HEADER = struct.Struct("<IBBHIi")
HEADER_SIZE = HEADER.size
_U32 = struct.Struct("<I")


class WireError(ValueError):
    """A frame that does not follow the format: rejected whole, nothing acted on."""


def _encode_error(value: object, what: str) -> WireError:
    return WireError(f"cannot encode {what}: {value!r:.80}")


class Layout:
    """The compiled codec for one group of fields (a request, an answer, a record)."""

    def __init__(self, fields: Sequence[T.Field], header: bool, what: str) -> None:
        self.fields = tuple(fields)
        self.what = what
        fixed = [i for i, f in enumerate(self.fields) if f.type.fixed]
        var = [i for i, f in enumerate(self.fields) if not f.type.fixed]
        self.fixed_idx = tuple(fixed)
        self.var_idx = tuple(var)
        codes = "".join(struct_code(self.fields[i].type) for i in fixed) + "I" * len(var)
        self.struct = struct.Struct("<" + (HEADER.format[1:] if header else "") + codes)
        self.size = self.struct.size
        self.skip = 6 if header else 0  # header values precede the fields in the unpacked tuple
        self.nvar = len(var)
        self.var_codec = tuple(blob_codec(self.fields[i].type) for i in var)
        self.var_max = tuple(b.max for b in self.var_codec)
        self.var_enc = tuple(b.enc for b in self.var_codec)
        self.var_dec = tuple(b.dec for b in self.var_codec)
        # Where each declared field sits in "fixed values, then var values" order.
        self.order = tuple(fixed.index(i) if i in fixed else len(fixed) + var.index(i)
                           for i in range(len(self.fields)))
        self.in_order = self.order == tuple(range(len(self.fields)))
        self.max_size = self.size + sum(self.var_max)

    # -- encoding ------------------------------------------------------------------------------------------
    def pack(self, head: tuple, values: Sequence[Any]) -> bytes:
        """Encode values (in table order); head is (version, kind, call, seq, errno) or () for a record."""
        if len(values) != len(self.fields):
            raise WireError(f"{self.what}: {len(values)} values for {len(self.fields)} fields")
        try:
            if not self.nvar:
                if head:
                    return self.struct.pack(self.size, *head, *values)
                return self.struct.pack(*values)
            blobs = [enc(values[i]) for i, enc in zip(self.var_idx, self.var_enc, strict=True)]
            lens = [len(b) for b in blobs]
            for n, limit, i in zip(lens, self.var_max, self.var_idx, strict=True):
                if n > limit:
                    raise WireError(f"{self.what}: field {self.fields[i].name} is {n} bytes, limit {limit}")
            fixed = [values[i] for i in self.fixed_idx]
            if head:
                head = (self.size + sum(lens), *head)
            return b"".join((self.struct.pack(*head, *fixed, *lens), *blobs))
        except (struct.error, TypeError, OverflowError) as exc:
            raise WireError(f"{self.what}: {exc}") from None

    # -- decoding ------------------------------------------------------------------------------------------
    def unpack(self, buf: bytes | memoryview, end: int | None = None) -> tuple:
        """Decode buf[0:end] exactly; the declared lengths must account for every byte."""
        end = len(buf) if end is None else end
        if end < self.size:
            raise WireError(f"{self.what}: {end} bytes, the fixed part alone is {self.size}")
        vals = self.struct.unpack_from(buf, 0)
        if not self.nvar:
            if end != self.size:
                raise WireError(f"{self.what}: {end - self.size} trailing bytes")
            out = vals[self.skip:]
            return out if self.in_order else tuple(out[j] for j in self.order)
        lens = vals[-self.nvar:]
        pos = self.size
        if sum(lens) != end - pos:
            raise WireError(f"{self.what}: field lengths {list(lens)} do not match the {end - pos} bytes left")
        decoded = []
        for n, limit, dec, i in zip(lens, self.var_max, self.var_dec, self.var_idx, strict=True):
            if n > limit:
                raise WireError(f"{self.what}: field {self.fields[i].name} claims {n} bytes, limit {limit}")
            decoded.append(dec(buf[pos:pos + n]))
            pos += n
        flat = vals[self.skip:len(vals) - self.nvar] + tuple(decoded)
        return flat if self.in_order else tuple(flat[j] for j in self.order)


# -- per-type codecs ---------------------------------------------------------------------------------------
#
# Each wire type says how it is carried by registering itself below: a fixed-size type with its struct code, a
# variable-size one with its blob codec.  They are asked once per layout, when the table is compiled at import;
# no frame ever goes through a dispatch.

Encoder = Callable[[Any], bytes | memoryview]
Decoder = Callable[[memoryview | bytes], Any]


class BlobCodec(NamedTuple):
    """How a variable-size field is carried: its largest blob, and the functions between value and blob.

    `plain`: the value *is* the blob (bytes in, bytes out), so the fast paths may skip both calls for it, and an
    answer made of one such field can be filled and read in place (`CallCodec.bytes_answer`).
    """

    max: int
    enc: Encoder
    dec: Decoder
    plain: bool = False


@singledispatch
def struct_code(t: T.WireType) -> str:
    """The struct code of a fixed-size type (a `Layout` asks this of its fixed fields only)."""
    raise TypeError(f"{t!r} is not carried at a fixed size")


@struct_code.register(T.Int)
@struct_code.register(T.Float)
@struct_code.register(T.Bool)
def _fixed_code(t: T.Int | T.Float | T.Bool) -> str:
    return t.code


@singledispatch
def blob_codec(t: T.WireType) -> BlobCodec:
    """The codec of a variable-size type (a `Layout` asks this of its variable fields only)."""
    raise TypeError(f"{t!r} is not carried as a blob")


def _enc_bytes(v: Any) -> bytes | memoryview:
    if isinstance(v, bytes):
        return v
    if isinstance(v, bytearray | memoryview):
        m = memoryview(v)
        # The length field is len() of the blob: only a flat byte view has len() == nbytes.
        if m.format == "B" and m.ndim == 1 and m.contiguous:
            return m
        return m.cast("B") if m.c_contiguous else m.tobytes()
    raise TypeError(f"a bytes-like object is required, not {type(v).__name__!r}")


def _dec_bytes(b: memoryview | bytes) -> bytes:
    return bytes(b)


@blob_codec.register
def _bytes_codec(t: T.Bytes) -> BlobCodec:
    return BlobCodec(t.max, _enc_bytes, _dec_bytes, plain=True)


def _enc_path(v: Any) -> bytes:
    if not isinstance(v, bytes) or b"\0" in v:
        raise TypeError("a path is bytes without NUL")
    return v


def _dec_path(b: memoryview | bytes) -> bytes:
    p = bytes(b)
    if b"\0" in p:
        raise WireError("path contains NUL")
    return p


@blob_codec.register
def _path_codec(t: T.Path) -> BlobCodec:
    return BlobCodec(t.max, _enc_path, _dec_path)


def _enc_text(v: Any) -> bytes:
    if not isinstance(v, str):
        raise TypeError("text field needs str")
    return v.encode("utf-8")


def _dec_text(b: memoryview | bytes) -> str:
    try:
        s = bytes(b).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("text field is not UTF-8") from None
    if "\0" in s:
        raise WireError("text field contains NUL")
    return s


@blob_codec.register
def _text_codec(t: T.Text) -> BlobCodec:
    return BlobCodec(t.max, _enc_text, _dec_text)


_RECORD_LAYOUTS: dict[str, Layout] = {}


def _record_layout(rec: T.Record) -> Layout:
    lay = _RECORD_LAYOUTS.get(rec.name)
    if lay is None:
        lay = _RECORD_LAYOUTS[rec.name] = Layout(rec.fields, header=False, what=f"record {rec.name}")
    return lay


@blob_codec.register
def _record_codec(t: T.Record) -> BlobCodec:
    lay = _record_layout(t)
    if lay.nvar:
        return BlobCodec(lay.max_size, lambda v: lay.pack((), v), lambda b: lay.unpack(b))
    # An all-fixed record (stat, statvfs): one struct call each way, the exact size the whole check on decoding;
    # any error takes the generic path, which raises the precise WireError.
    st_pack, st_unpack, size = lay.struct.pack, lay.struct.unpack, lay.size

    def enc_record(v: Sequence[Any]) -> bytes:
        try:
            return st_pack(*v)
        except (struct.error, TypeError, OverflowError):
            return lay.pack((), v)

    def dec_record(b: memoryview | bytes) -> tuple:
        if len(b) == size:
            return st_unpack(b)
        return lay.unpack(b)

    return BlobCodec(lay.max_size, enc_record, dec_record)


@blob_codec.register
def _list_codec(t: T.List) -> BlobCodec:
    lay = _record_layout(t.item)
    item_max = lay.max_size

    def enc_list(items: Sequence[Sequence[Any]]) -> bytes:
        if len(items) > t.max:
            raise WireError(f"list of {len(items)} {t.item.name} records, limit {t.max}")
        parts = [_U32.pack(len(items))]
        for item in items:
            body = lay.pack((), item)
            parts.append(_U32.pack(len(body)))
            parts.append(body)
        return b"".join(parts)

    def dec_list(b: memoryview | bytes) -> list:
        b = memoryview(b)
        if len(b) < 4:
            raise WireError(f"list of {t.item.name}: no count")
        (n,) = _U32.unpack_from(b, 0)
        # Each record costs at least 4 + its fixed part: a claimed count that cannot fit is refused
        # before the loop, so a lying count allocates nothing.
        if n > t.max or n * (4 + lay.size) > len(b) - 4:
            raise WireError(f"list of {t.item.name}: count {n} impossible in {len(b)} bytes (limit {t.max})")
        out, pos = [], 4
        for _ in range(n):
            if pos + 4 > len(b):
                raise WireError(f"list of {t.item.name}: truncated")
            (size,) = _U32.unpack_from(b, pos)
            pos += 4
            if size > item_max or pos + size > len(b):
                raise WireError(f"list of {t.item.name}: record of {size} bytes does not fit")
            out.append(lay.unpack(b[pos:pos + size]))
            pos += size
        if pos != len(b):
            raise WireError(f"list of {t.item.name}: {len(b) - pos} trailing bytes")
        return out

    return BlobCodec(4 + t.max * item_max, enc_list, dec_list)


# -- per-call codecs ---------------------------------------------------------------------------------------


# The fast codecs read the first eight header bytes (length, version, kind, call) as one little-endian u64, so
# "is this a well-formed frame of this very call" is one integer comparison: tag | length.
_FAST_HEAD = "<QIi"
require(struct.calcsize(_FAST_HEAD) == HEADER_SIZE,
        f"the fast header {_FAST_HEAD!r} is {struct.calcsize(_FAST_HEAD)} bytes, the frame header {HEADER_SIZE}")


def _tag(kind: int, number: int) -> int:
    return (WIRE_VERSION << 32) | (kind << 40) | (number << 48)


FastPack = Callable[[int, Sequence[Any]], bytes]


def _fast_codecs(lay: Layout, kind: int, number: int) -> tuple[FastPack, Callable[[int, Any], bytes],
                                                               Callable[[Any], tuple | None],
                                                               Callable[[Any, int], tuple | None]]:
    """Straight-line codecs of one frame layout, for the shapes nearly every call has.

    Returns pack(seq, values), pack_one(seq, value) for a one-field layout, unpack_any(frame) -> (seq, values)
    and unpack_seq(frame, seq) -> values.  They produce and accept exactly the frames of the generic
    `Layout.pack/unpack` (no field, length or limit check is skipped), but only take the common path: all
    fields fixed-size (one struct call), or exactly one variable-size field.  Anything else - an error, an
    errno answer, another shape - makes the packers fall back to the generic code, which raises the precise
    WireError, and the unpackers answer None, so that the caller takes the generic decoder.  (A variable
    field's own decoder - a path with a NUL, a lying list count - raises its WireError here directly, the same
    one the generic decoder raises.)
    """
    tag = _tag(kind, number)
    size = lay.size
    nf = len(lay.fields)
    st = struct.Struct(_FAST_HEAD + lay.struct.format[len(HEADER.format):])
    s_pack, s_unpack, s_unpack_from = st.pack, st.unpack, st.unpack_from
    head = (WIRE_VERSION, kind, number)
    errors = (struct.error, TypeError, OverflowError)

    def slow_pack(seq: int, values: Sequence[Any]) -> bytes:
        return lay.pack((*head, seq, 0), values)

    if not lay.nvar:
        first = tag | size

        def pack(seq: int, values: Sequence[Any]) -> bytes:
            try:
                return s_pack(first, seq, 0, *values)  # struct checks the count and every range
            except errors:
                return slow_pack(seq, values)

        def pack_one(seq: int, value: Any) -> bytes:
            try:
                return s_pack(first, seq, 0, value)
            except errors:
                return slow_pack(seq, (value,))

        def unpack_any(frame: Any) -> tuple | None:
            if len(frame) == size:
                v = s_unpack(frame)
                if v[0] == first and not v[2]:
                    return v[1], v[3:]
            return None

        def unpack_seq(frame: Any, seq: int) -> tuple | None:
            if len(frame) == size:
                v = s_unpack(frame)
                if v[0] == first and v[1] == seq and not v[2]:
                    return v[3:]
            return None

        return pack, pack_one, unpack_any, unpack_seq

    if lay.nvar == 1:
        k = lay.var_idx[0]  # the variable field's place in table order; its length is the struct's last value
        limit, enc, dec, plain = lay.var_codec[0]
        last = k == nf - 1
        # Plain bytes (file data, payloads) need no conversion either way: skip the codec call for them.
        plain_enc = plain_dec = plain

        def pack(seq: int, values: Sequence[Any]) -> bytes:
            try:
                if len(values) == nf:
                    blob = values[k]
                    if not (plain_enc and blob.__class__ is bytes):
                        blob = enc(blob)
                    n = len(blob)
                    if n <= limit:
                        if last:
                            return s_pack(tag | (size + n), seq, 0, *values[:k], n) + blob
                        return s_pack(tag | (size + n), seq, 0, *values[:k], *values[k + 1:], n) + blob
            except errors:
                pass
            return slow_pack(seq, values)

        def pack_one(seq: int, value: Any) -> bytes:
            try:
                blob = value if plain_enc and value.__class__ is bytes else enc(value)
                n = len(blob)
                if n <= limit:
                    return s_pack(tag | (size + n), seq, 0, n) + blob
            except errors:
                pass
            return slow_pack(seq, (value,))

        # n == size + length with length <= limit also bounds n below MAX_FRAME (check_codecs, every call), so
        # `tag | n` cannot spill into the version, kind or call bytes.
        def unpack_any(frame: Any) -> tuple | None:
            n = len(frame)
            if n >= size:
                v = s_unpack_from(frame)
                length = v[-1]
                if v[0] == tag | n and not v[2] and length == n - size and length <= limit:
                    x = frame[size:] if frame.__class__ is bytes else memoryview(frame)[size:]  # one copy at most
                    if not (plain_dec and x.__class__ is bytes):
                        x = dec(x)
                    if last:
                        return v[1], v[3:-1] + (x,)
                    return v[1], v[3:3 + k] + (x,) + v[3 + k:-1]
            return None

        def unpack_seq(frame: Any, seq: int) -> tuple | None:
            n = len(frame)
            if n >= size:
                v = s_unpack_from(frame)
                length = v[-1]
                if v[0] == tag | n and v[1] == seq and not v[2] and length == n - size and length <= limit:
                    x = frame[size:] if frame.__class__ is bytes else memoryview(frame)[size:]  # one copy at most
                    if not (plain_dec and x.__class__ is bytes):
                        x = dec(x)
                    if last:
                        return v[3:-1] + (x,)
                    return v[3:3 + k] + (x,) + v[3 + k:-1]
            return None

        return pack, pack_one, unpack_any, unpack_seq

    return slow_pack, lambda seq, value: slow_pack(seq, (value,)), lambda frame: None, lambda frame, seq: None


FinishInPlace = Callable[[bytearray, int, int], memoryview]
UnpackView = Callable[[Any, int], tuple | None]


def _in_place_codecs(codec: CallCodec) -> tuple[FinishInPlace, UnpackView]:
    lay = codec.answer
    st = struct.Struct(_FAST_HEAD + lay.struct.format[len(HEADER.format):])
    tag, size, limit, name = _tag(ANSWER, codec.number), lay.size, lay.var_max[0], codec.call.name

    def finish_in_place(frame: bytearray, seq: int, n: int) -> memoryview:
        """The answer in `frame` - room for the header, then data whose first n bytes are filled - as a view."""
        if n.__class__ is not int or not 0 <= n <= min(len(frame) - size, limit):
            raise WireError(f"{name} answer: {n} bytes do not fit the {len(frame) - size} reserved")
        st.pack_into(frame, 0, tag | (size + n), seq, 0, n)
        return memoryview(frame)[:size + n]

    def unpack_view(frame: Any, seq: int) -> tuple | None:
        """unpack_seq with the data as a memoryview into the frame: the same checks, no copy."""
        n = len(frame)
        if n >= size:
            v = st.unpack_from(frame)
            if v[0] == tag | n and v[1] == seq and not v[2] and v[3] == n - size and v[3] <= limit:
                return (memoryview(frame)[size:],)
        return None

    return finish_in_place, unpack_view


class CallCodec(Conforming):
    """Request and answer layouts of one call, and their compiled fast paths (see `_fast_codecs`)."""

    __slots__ = ("call", "number", "request", "answer", "nresults", "pack_request", "unpack_request",
                 "pack_answer", "pack_result", "unpack_answer", "bytes_answer", "finish_in_place", "unpack_view")

    def __init__(self, c: Call) -> None:
        assert c.number is not None
        self.call = c
        self.number = c.number
        self.request = Layout(c.params, header=True, what=f"{c.name} request")
        self.answer = Layout(c.results, header=True, what=f"{c.name} answer")
        self.nresults = len(c.results)
        # Requests: every request fits a frame by construction (max_size <= MAX_FRAME is checked below).
        self.pack_request, _, self.unpack_request, _ = _fast_codecs(self.request, REQUEST, c.number)
        self.pack_answer, pack_one, _, self.unpack_answer = _fast_codecs(self.answer, ANSWER, c.number)
        pack_answer = self.pack_answer
        # pack_result(seq, what the host function returned): one value, a tuple, or None for no results.
        if self.nresults == 1:
            self.pack_result = pack_one
        else:
            self.pack_result = lambda seq, result: pack_answer(seq, result or ())
        # Bulk data without extra copies: when the whole answer is one byte string (read, pread, recv), the host
        # may fill an answer frame in place (finish_in_place writes its header) and the enclave may copy the
        # data straight out of the frame into the caller's buffer (unpack_view), instead of a bytes object each.
        self.bytes_answer = self.nresults == 1 and self.answer.nvar == 1 and self.answer.var_codec[0].plain
        self.finish_in_place: FinishInPlace | None = None
        self.unpack_view: UnpackView | None = None
        if self.bytes_answer:
            self.finish_in_place, self.unpack_view = _in_place_codecs(self)
        self._conformers = None  # conform_request / conform_answer (conform.Conforming), compiled at first use


CODECS: dict[int, CallCodec] = {c.number: CallCodec(c) for c in CALLS if c.number is not None}
CODECS_BY_NAME: dict[str, CallCodec] = {cc.call.name: cc for cc in CODECS.values()}



def check_codecs(codecs: Iterable[CallCodec]) -> None:
    """The table must never declare a frame that could exceed the limit (TableError names the row; survives -O)."""
    for cc in codecs:
        for side, lay in (("request", cc.request), ("answer", cc.answer)):
            require(lay.max_size <= T.MAX_FRAME,
                    f"{cc.call.name}: its largest {side} is {lay.max_size} bytes, over the {T.MAX_FRAME}-byte frame")


check_codecs(CODECS.values())


def encode_request(codec: CallCodec, seq: int, args: Sequence[Any]) -> bytes:
    frame = codec.pack_request(seq, args)
    if len(frame) > T.MAX_FRAME:
        raise WireError(f"{codec.call.name} request of {len(frame)} bytes exceeds {T.MAX_FRAME}")
    return frame


def encode_answer(codec: CallCodec, seq: int, results: Sequence[Any]) -> bytes:
    return codec.pack_answer(seq, results)


def encode_error(number: int, seq: int, err: int) -> bytes:
    return HEADER.pack(HEADER_SIZE, WIRE_VERSION, ANSWER, number, seq, err)


def read_header(frame: bytes | memoryview) -> tuple[int, int, int, int, int]:
    """(kind, call, seq, errno, length) of a frame whose length field matches its size."""
    if len(frame) < HEADER_SIZE:
        raise WireError(f"frame of {len(frame)} bytes is shorter than the {HEADER_SIZE}-byte header")
    length, version, kind, number, seq, err = HEADER.unpack_from(frame, 0)
    if version != WIRE_VERSION:
        raise WireError(f"wire version {version}, expected {WIRE_VERSION}")
    if kind not in KINDS:
        raise WireError(f"unknown frame kind {kind}")
    if length != len(frame) or length > T.MAX_FRAME:
        raise WireError(f"header says {length} bytes, frame has {len(frame)} (limit {T.MAX_FRAME})")
    return kind, number, seq, err, length


def decode_request(frame: bytes | memoryview) -> tuple[CallCodec, int, tuple]:
    """The host's decoder: which call, which sequence number, the arguments in table order."""
    if len(frame) >= HEADER_SIZE:  # the fast path for a well-formed request; anything else is decoded below
        codec = CODECS.get(frame[6] | frame[7] << 8)
        if codec is not None:
            fast = codec.unpack_request(frame)
            if fast is not None:
                return codec, fast[0], fast[1]
    kind, number, seq, err, _ = read_header(frame)
    if kind != REQUEST:
        raise WireError(f"expected a request, got kind {kind}")
    codec = CODECS.get(number)
    if codec is None:
        raise WireError(f"unknown call number {number}")
    if err:
        raise WireError(f"request carries errno {err}")
    return codec, seq, codec.request.unpack(frame)


def decode_answer(frame: bytes | memoryview, codec: CallCodec, seq: int) -> tuple[int, tuple]:
    """The enclave's decoder: (errno, results).  The answer must be for this very call and sequence."""
    results = codec.unpack_answer(frame, seq)  # a well-formed success; anything else is decoded below
    if results is not None:
        return 0, results
    kind, number, aseq, err, _ = read_header(frame)
    if kind != ANSWER:
        raise WireError(f"expected an answer, got kind {kind}")
    if number != codec.number:
        raise WireError(f"answer for call {number}, expected {codec.number} ({codec.call.name})")
    if aseq != seq:
        raise WireError(f"answer for sequence {aseq}, expected {seq}")
    if err:
        if len(frame) != HEADER_SIZE:
            raise WireError("a failed answer carries a body")
        return err, ()
    return 0, codec.answer.unpack(frame)


def codec_for(name: str) -> CallCodec:
    return CODECS_BY_NAME[name]


def call_of(number: int) -> Call | None:
    return BY_NUMBER.get(number)
