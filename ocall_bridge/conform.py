"""Values a frame would carry unchanged: what lets the sim backend skip the frames (client.py, host/runtime.py).

A frame is more than transport: encoding refuses what does not fit the table (an int out of its struct range, an
over-long blob, a path with a NUL), and decoding hands the other side fresh objects of the exact types it expects
(bytes, never a bytearray the sender can still change; tuples; a new list).  On the sim backend both sides live in
one process, so a request's arguments and an answer's results may go across as Python objects, but only when
`decode(encode(values)) == values` holds with the very same types, and with nothing the sender can still mutate.

`conformer(fields)` compiles, once per row and side, a function `conform(values) -> tuple | None`: the values as
the other side would have decoded them, or None when it cannot promise that (a bool where an int is declared, a
bytearray, a namedtuple, a value out of range, a malformed record).  None sends the caller back to the frames,
which then do whatever they always did (encode the value, or refuse it).  So a conformer may be stricter than the
codec, never looser; tests/test_lean.py checks `conform(v)` against `unpack(pack(v))` for every row of the table.
The checks of the table (validate.py: ranges, bounds, relations, the run's plausibility) are not here: they run
on both routes, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import types as T

Conform = Callable[[Any], "tuple | None"]

# type(), never `v.__class__`: a subclass can make `__class__` a property that answers `bytes` (and then fool every
# comparison, hash and containment test after it); type() reads the real type.  Both builtins are captured here,
# so a program that rebinds builtins.type or builtins.len cannot change what these checks mean.
_type, _len = type, len

# The struct codes the table uses for integers, and the values each carries unchanged.
_INT_RANGE = {"b": (-(1 << 7), (1 << 7) - 1), "B": (0, (1 << 8) - 1), "h": (-(1 << 15), (1 << 15) - 1),
              "H": (0, (1 << 16) - 1), "i": (-(1 << 31), (1 << 31) - 1), "I": (0, (1 << 32) - 1),
              "q": (-(1 << 63), (1 << 63) - 1), "Q": (0, (1 << 64) - 1)}


class _Never(Exception):
    """A field type this module does not know: its row always takes the frames."""


def _text(limit: int) -> Callable[[Any], Any]:
    def text(v: Any) -> Any:
        if _type(v) is not str or "\0" in v:
            return None  # the decoder refuses a NUL: the frames then do what they do with it
        try:
            if _len(v.encode("utf-8")) > limit:
                return None
        except UnicodeEncodeError:
            return None
        return v

    return text


def _list(item: Conform, limit: int) -> Callable[[Any], Any]:
    def conform_list(v: Any) -> Any:
        if _type(v) is not list and _type(v) is not tuple or _len(v) > limit:
            return None
        out = []
        for x in v:
            c = item(x)
            if c is None:
                return None
            out.append(c)
        return out  # a new list: never the sender's own, which it may still change

    return conform_list


def _field(t: T.WireType, var: str, helpers: dict[str, Any]) -> tuple[str, str | None]:
    """(condition on `var`, or a helper call producing the converted value) for one field of type t."""
    if isinstance(t, T.Int):
        if t.code not in _INT_RANGE:
            raise _Never(t.code)
        lo, hi = _INT_RANGE[t.code]
        return f"_type({var}) is int and {lo} <= {var} <= {hi}", None
    if isinstance(t, T.Bool):
        return f"_type({var}) is bool", None
    if isinstance(t, T.Float):
        if t.code != "d":
            raise _Never(t.code)
        return f"_type({var}) is float", None
    if isinstance(t, T.Bytes):
        return f"_type({var}) is bytes and _len({var}) <= {t.max}", None
    if isinstance(t, T.Path):
        return f"_type({var}) is bytes and _len({var}) <= {t.max} and b'\\0' not in {var}", None
    name = f"h{len(helpers)}"
    if isinstance(t, T.Text):
        helpers[name] = _text(t.max)
    elif isinstance(t, T.Record):
        helpers[name] = _compile(t.fields)
    elif isinstance(t, T.List):
        helpers[name] = _list(_compile(t.item.fields), t.max)
    else:
        raise _Never(type(t).__name__)
    return "", name


def _compile(fields: Sequence[T.Field]) -> Conform:
    helpers: dict[str, Any] = {}
    n = len(fields)
    names = [f"a{i}" for i in range(n)]
    lines = ["def conform(v):", "    try:",
             f"        if _type(v) is not tuple or _len(v) != {n}:", "            return None"]
    if n:
        lines.append(f"        {', '.join(names)}{',' if n == 1 else ''} = v")
    out = list(names)
    rebuilt = False
    for i, f in enumerate(fields):
        cond, helper = _field(f.type, names[i], helpers)
        if helper is None:
            lines += [f"        if not ({cond}):", "            return None"]
        else:
            lines += [f"        c{i} = {helper}({names[i]})", f"        if c{i} is None:", "            return None"]
            out[i] = f"c{i}"
            rebuilt = True
    if rebuilt:
        lines.append(f"        return ({', '.join(out)}{',' if n == 1 else ''})")
    else:
        lines.append("        return v")  # a tuple of immutable values of the exact types: itself
    lines += ["    except (TypeError, ValueError, AttributeError):", "        return None"]
    scope: dict[str, Any] = dict(helpers, _type=_type, _len=_len)
    # Source generated here from the table's own field types (never from data that crossed the boundary).
    exec(compile("\n".join(lines), "<conform>", "exec"), scope)
    return scope["conform"]


def _never(v: Any) -> None:
    return None


def conformer(fields: Sequence[T.Field]) -> Conform:
    """conform(values) for a request's parameters or an answer's results (a tuple in table order)."""
    try:
        return _compile(fields)
    except _Never:
        return _never


class Conforming:
    """A codec's `conform_request` / `conform_answer` (wire.CallCodec): without frames, the values as the other
    side would decode them, or None where only the frames can say (then they are used).  Compiled at first use:
    every row's at import cost ~40 ms of each start, and only a sim enclave's calls ever use them."""

    __slots__ = ("_conformers",)
    call: Any
    _conformers: tuple[Conform, Conform] | None

    def _compiled_conformers(self) -> tuple[Conform, Conform]:
        if self._conformers is None:
            self._conformers = (conformer(self.call.params), conformer(self.call.results))
        return self._conformers

    @property
    def conform_request(self) -> Conform:
        return self._compiled_conformers()[0]

    @property
    def conform_answer(self) -> Conform:
        return self._compiled_conformers()[1]


__all__ = ["Conform", "Conforming", "conformer"]
