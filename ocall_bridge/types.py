"""The vocabulary the ocall table is written in.

Every parameter and result of an ocall is a named `Field` of one of the wire types below.  A type says two
things at once: how the value is laid out on the wire (fixed-size struct code, or a length-prefixed blob) and
which values are *meaningful* (ranges, bounds tied to another argument).  `wire.py` derives the codecs from the
first, `validate.py` derives the checks from the second; nothing is written per call.
"""

from __future__ import annotations

from .frozen import Frozen

# Hard limits.  Every length on the wire is checked against these before anything is allocated.
MAX_DATA = 1 << 20  # bytes in one read/write/send/recv chunk; bigger transfers are split by the enclave
MAX_FRAME = MAX_DATA + (64 << 10)  # one frame: the largest chunk plus generous room for the other fields
MAX_PATH = 4096  # PATH_MAX on Linux, including the terminating NUL the kernel adds
MAX_NAME = 255  # NAME_MAX: one directory entry name
MAX_TEXT = 1025  # host names (NI_MAXHOST) and other short strings


class Bound(Frozen):
    """A limit that depends on the request: `arg` bounds by an argument's value, `len` by its length."""

    kind: str  # "arg" | "len"
    name: str


def arg(name: str) -> Bound:
    return Bound("arg", name)


def length(name: str) -> Bound:
    return Bound("len", name)


HANDLE = "handle"  # Int.role of a host handle


class _Role:
    """What an integer stands for (`Int.role`); a value of any other type stands for itself.  Declared on every
    type so that "is this field a handle" is asked of the field, never of its class."""

    role = ""


class Int(_Role, Frozen):
    """A fixed-size integer.  `code` is the struct code; lo/hi/bound say which values make sense."""

    code: str = "q"
    lo: int | None = None
    hi: int | None = None
    bound: Bound | None = None
    role: str = ""  # "handle": a host handle the requester must own; "errno": an errno value

    fixed = True


class Float(_Role, Frozen):
    code: str = "d"
    lo: float | None = None

    fixed = True


class Bool(_Role, Frozen):
    code: str = "?"

    fixed = True


class Bytes(_Role, Frozen):
    """A length-prefixed byte string: file data, socket payloads, raw names."""

    max: int = MAX_DATA
    bound: Bound | None = None

    fixed = False


class Path(_Role, Frozen):
    """A filesystem path as bytes (os.fsencode).  No NUL inside, at most PATH_MAX - 1 bytes."""

    max: int = MAX_PATH - 1

    fixed = False


class Text(_Role, Frozen):
    """A short UTF-8 string (host names, service names)."""

    max: int = MAX_TEXT

    fixed = False


class Record(_Role, Frozen):
    """A group of fields travelling together (a stat buffer, an address, a directory entry).

    It is fixed-size when all its fields are; otherwise it is carried as a blob.  Its Python value is a tuple
    in field order.
    """

    name: str
    fields: tuple[Field, ...]

    @property
    def fixed(self) -> bool:
        return False  # records are always carried as one blob; simpler bounds, one nested decoder


class List(_Role, Frozen):
    """A counted sequence of records, at most `max` of them (and, with `bound`, at most that argument)."""

    item: Record
    max: int
    bound: Bound | None = None

    fixed = False


WireType = Int | Float | Bool | Bytes | Path | Text | Record | List


class Field(Frozen):
    name: str
    type: WireType = Int()  # immutable: one instance serves every field that takes the default
    doc: str = ""

    @property
    def is_handle(self) -> bool:
        """A host handle: the requester must own it (host), a new one in an answer must be fresh (enclave)."""
        return self.type.role == HANDLE


# Shorthands used by the table.  They keep each row of calls.py to one readable line.
def i64(name: str, lo: int | None = None, hi: int | None = None, bound: Bound | None = None) -> Field:
    return Field(name, Int("q", lo, hi, bound))


def i32(name: str, lo: int | None = None, hi: int | None = None) -> Field:
    return Field(name, Int("i", lo, hi))


def u64(name: str) -> Field:
    return Field(name, Int("Q", 0))


def handle(name: str = "fd") -> Field:
    # Host handles are opaque positive numbers the host issued; the enclave can name no other.
    return Field(name, Int("q", 0, None, role=HANDLE))


def count(name: str = "count") -> Field:
    return Field(name, Int("q", 0, MAX_DATA))


def flag(name: str) -> Field:
    return Field(name, Bool())


def f64(name: str, lo: float | None = None) -> Field:
    return Field(name, Float("d", lo))


def data(name: str = "data", bound: Bound | None = None, max: int = MAX_DATA) -> Field:
    return Field(name, Bytes(max, bound))


def path(name: str = "path") -> Field:
    return Field(name, Path())


def text(name: str, max: int = MAX_TEXT) -> Field:
    return Field(name, Text(max))


def record(name: str, rec: Record) -> Field:
    return Field(name, rec)


def listof(name: str, rec: Record, max: int, bound: Bound | None = None) -> Field:
    return Field(name, List(rec, max, bound))
