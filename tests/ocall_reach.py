"""What an enclave function's code can reach, read from its bytecode (never run): the rows it calls, and
whether it can raise a refusal.

The runtime states these facts itself (`ocall_bridge.calls.uses`); this analysis is how the tests check that
every declaration is true (tests/test_uses.py).  It lives here, not in the package, because guessing from
opcodes is a check on the facts, not their source.
"""

from __future__ import annotations

import dataclasses
import dis
import inspect
import types
from collections.abc import Iterable
from typing import Any

from ocall_bridge.calls import CALLS

WIRE_CALLS = frozenset(c.name for c in CALLS if not c.inside)
INSIDE_CALLS = frozenset(c.name for c in CALLS if c.inside)


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _ours(obj: Any) -> bool:
    return isinstance(obj, types.FunctionType | type) and str(getattr(obj, "__module__", "")).startswith(
        "enclave_libc")


def _is_refusal_class(obj: Any) -> bool:
    from enclave_libc.errors import Unsupported

    return isinstance(obj, type) and issubclass(obj, Unsupported)


@dataclasses.dataclass
class Reach:
    ocalls: set[str] = dataclasses.field(default_factory=set)
    refuses: bool = False


# Ocalls made through an object of the runtime rather than `.ocall`: the fd table closes the host handle when
# the last enclave fd that shares it goes.
_IMPLIED: dict[tuple[str | None, str], str] = {("fds", "close"): "close"}
_RAISE_STOPPERS = ("RETURN_VALUE", "BINARY_OP", "CHECK_EXC_MATCH", "COMPARE_OP", "IS_OP", "CONTAINS_OP")


def _raised_here(instructions: list[dis.Instruction], at: int) -> bool:
    """Whether the `Unsupported` loaded at `at` is constructed and raised, rather than only compared against
    (`isinstance(exc, PolicyDenied | Unsupported)`, `except Unsupported:`)."""
    for ins in instructions[at + 1:]:
        if ins.opname == "RAISE_VARARGS":
            return True
        if ins.opname in _RAISE_STOPPERS or ins.opname.startswith(("POP_JUMP", "JUMP", "STORE_")):
            return False
    return False


def reach(root: Any) -> Reach:
    """The ocalls a replacement can make and whether it can refuse, read from bytecode (never run)."""
    out = Reach()
    seen: set[int] = set()
    stack = [root]

    def follow(value: Any, instructions: list, i: int) -> None:
        """A name the code loads: a refusal it may raise, or more of our code to read."""
        if _is_refusal_class(value):
            out.refuses = out.refuses or _raised_here(instructions, i)
        elif _ours(value):
            stack.append(value)
        elif callable(value) and not isinstance(value, type) and _ours(inspect.unwrap(value)):
            stack.append(value)  # our function behind a wrapper (the inside tracer's): read what it wraps
    while stack:
        obj = stack.pop()
        if not isinstance(obj, type):
            obj = inspect.unwrap(obj)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, type):
            for value in vars(obj).values():
                if isinstance(value, staticmethod | classmethod):
                    value = value.__func__
                if isinstance(value, property):
                    stack.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
                elif isinstance(value, types.FunctionType) or _ours(value):
                    stack.append(value)  # methods, and class attributes such as `_selector_cls = Poll`
            continue
        code = getattr(obj, "__code__", None)
        if code is None:
            continue
        globs = getattr(obj, "__globals__", {})
        for co in _code_objects(code):
            prev_attr: str | None = None
            prev_obj: Any = None
            aliases: dict[str, str] = {}  # local variable -> the runtime attribute stored in it (table = RT.fds)
            instructions = list(dis.get_instructions(co))
            for i, ins in enumerate(instructions):
                op, arg = ins.opname, ins.argval
                if op in ("LOAD_GLOBAL", "LOAD_NAME"):
                    value = globs.get(arg)
                    follow(value, instructions, i)
                    prev_obj, prev_attr = value, None
                    continue
                if op in ("LOAD_ATTR", "LOAD_METHOD"):
                    if prev_attr in ("ocall", "stubs") and arg in WIRE_CALLS:
                        out.ocalls.add(arg)
                    elif (prev_attr, arg) in _IMPLIED:
                        out.ocalls.add(_IMPLIED[(prev_attr, arg)])
                    elif isinstance(prev_obj, types.ModuleType) and prev_obj.__name__.startswith("enclave_libc"):
                        follow(getattr(prev_obj, arg, None), instructions, i)
                    prev_attr, prev_obj = arg, None
                    continue
                if op == "STORE_FAST" and prev_attr is not None:
                    aliases[arg] = prev_attr
                elif op == "LOAD_FAST" and arg in aliases:
                    prev_attr, prev_obj = aliases[arg], None
                    continue
                if op not in ("PRECALL", "CACHE", "EXTENDED_ARG"):
                    prev_attr, prev_obj = None, None
            for const in co.co_consts:
                # A call named by a string handed to a helper: _path_call("remove", "unlink", ...).
                if isinstance(const, str) and const in WIRE_CALLS:
                    out.ocalls.add(const)
    return out


def only_raises(fn: Any) -> bool:
    """True when a function's own body has no way to return: it can only raise."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    # RETURN_CONST (3.12+) is how a function returns None (or any constant) without loading it first.
    return not any(ins.opname in ("RETURN_VALUE", "RETURN_CONST") for ins in dis.get_instructions(code))

