"""`Frozen`: a frozen dataclass's behaviour for small records that are built at import, without `@dataclass`.

`@dataclass(frozen=True)` writes and compiles six methods for every class (about 0.5 ms a class): the table's
vocabulary (types.py), the native-call shapes (native.py) and the confinement's rule records add up to ~15 ms of
every start, paid by the runner and again by the enclave process before it confines itself.  A subclass of
`Frozen` gets the same behaviour for about a tenth of the cost: one small __init__ compiled per class (as
@dataclass writes it: instances are built as fast), the other methods generic, reading the class's field list.

* fields are the annotated names of the class and its bases, in definition order; a class attribute of the
  same name is the field's default (an immutable value: there is no default_factory);
* construction by position or keyword with the dataclass's TypeErrors (missing, unexpected, repeated), then
  `__post_init__` when the class defines one;
* equality only between instances of the very same class, comparing the field values in order; a hash of the
  values; the dataclass repr (`Name(a=1, b='x')`); `__match_args__`;
* assignment and deletion refused with dataclasses.FrozenInstanceError.

Records that tests rebuild with dataclasses.replace (calls.Call, native.Form) stay dataclasses.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any, dataclass_transform


@dataclass_transform(frozen_default=True)
class Frozen:
    """Base class of a frozen record (see the module docstring)."""

    _fields: tuple[str, ...] = ()
    __match_args__: tuple[str, ...] = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        own = tuple(cls.__dict__.get("__annotations__", {}))
        cls._fields = cls._fields + tuple(n for n in own if n not in cls._fields)
        cls.__match_args__ = cls._fields  # type: ignore[misc]  # a class attribute mypy takes for final
        cls.__init__ = _make_init(cls)  # type: ignore[method-assign]  # as @dataclass sets it

    def _values(self) -> tuple:
        return tuple(getattr(self, n) for n in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()  # the same class as self
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


def _make_init(cls: type[Frozen]) -> Any:
    """The class's __init__, as @dataclass writes it (one small function compiled, instead of six): parameters in
    field order with the class attributes as defaults, each stored with object.__setattr__, then __post_init__."""
    names = cls._fields
    for name in names:
        if not name.isidentifier() or name.startswith("__"):
            raise TypeError(f"{cls.__name__}: field name {name!r} cannot be a parameter")
    scope: dict[str, Any] = {"_put": object.__setattr__}
    params = []
    for name in names:
        if hasattr(cls, name):
            scope[f"_default_{name}"] = getattr(cls, name)
            params.append(f"{name}=_default_{name}")
        else:
            params.append(name)
    body = [f"    _put(self, {name!r}, {name})" for name in names]
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(compile(source, f"<Frozen {cls.__qualname__}>", "exec"), scope)  # names checked above: identifiers
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


__all__ = ["Frozen"]
