"""A small builder for seccomp classic-BPF programs (x86_64).

Why raw classic BPF built here instead of libseccomp:

* no C build step: the program is plain bytes handed to ``seccomp(2)`` through ctypes (``_native.py``);
* libseccomp (and its headers) may be absent on the machine that runs the enclave, and a confinement that
  depends on an optional library is a confinement that silently is not there;
* the program is small (a few hundred instructions) and every instruction comes from this file, so it can be
  read, dumped (:meth:`Program.dump`) and audited; there is no compiler between the rule table and the kernel.

Shape of every program built here::

    ld  arch                 ; wrong architecture (i386 int 0x80, ...)      -> KILL_PROCESS
    ld  nr ; nr >= 0x40000000  (x32 ABI numbers)                            -> ERRNO(ENOSYS)
    for each syscall block:  nr == N ?  rules in order (first match wins), then the block's fallback
    default                                                                  -> ERRNO(ENOSYS)

Every path inside a block ends in ``ret``, so the accumulator holds ``nr`` again at the start of each block and
needs no reload.  Blocks whose action does not depend on arguments are cheap at run time anyway: since Linux
5.11 the kernel caches "always ALLOW" syscall numbers and never runs the filter for them.

A rule is an action guarded by argument conditions (all must hold).  seccomp sees the six arguments as 64-bit
values, but classic BPF loads 32 bits at a time, so every 64-bit comparison looks at both halves.  Where the
kernel itself only reads the low 32 bits of an argument (an ``int`` or ``unsigned int`` parameter), *deny*
rules must compare only those bits (:func:`low32`), or garbage in the high half would slip past them; *allow*
rules compare all 64 bits, so garbage there only ever turns an allow into a refusal.

Classic BPF jumps only forward, and conditional jumps have 8-bit offsets.  The assembler lays the program
out with labels and relaxes any conditional jump whose target is more than 255 instructions away into
``jcc 0,1 ; ja T ; ja F`` (``ja`` has a 32-bit offset), repeating until the layout is stable.
"""

from __future__ import annotations

import errno as _errno
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ocall_bridge.frozen import Frozen

from .syscalls import AUDIT_ARCH_X86_64, NAME, X32_SYSCALL_BIT

# --- classic BPF opcodes (linux/filter.h, linux/bpf_common.h) -------------------------------------------------
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_ALU_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
BPF_JA = 0x05  # BPF_JMP | BPF_JA
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGT_K = 0x25  # BPF_JMP | BPF_JGT | BPF_K
BPF_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
BPF_MAXINSNS = 4096

# --- seccomp return values (linux/seccomp.h) -------------------------------------------------------------------
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_KILL_THREAD = 0x00000000
SECCOMP_RET_TRAP = 0x00030000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_LOG = 0x7FFC0000
SECCOMP_RET_ALLOW = 0x7FFF0000

# --- struct seccomp_data offsets: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6] ------------------
OFF_NR = 0
OFF_ARCH = 4
OFF_ARGS = 16

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


# ----------------------------------------------------------------------------------------------------------------
# Actions and conditions
# ----------------------------------------------------------------------------------------------------------------


class Action(Frozen):
    """A seccomp return value, with a readable name for dumps and docs."""

    value: int
    label: str

    def __str__(self) -> str:
        return self.label


ALLOW = Action(SECCOMP_RET_ALLOW, "ALLOW")
USER_NOTIF = Action(SECCOMP_RET_USER_NOTIF, "USER_NOTIF")
KILL_PROCESS = Action(SECCOMP_RET_KILL_PROCESS, "KILL_PROCESS")


def ERRNO(code: int) -> Action:
    """Fail the syscall with ``-code`` without running it."""
    if not 0 < code <= 4095:
        raise ValueError(f"errno {code} out of range 1..4095")
    return Action(SECCOMP_RET_ERRNO | code, f"ERRNO({_errno.errorcode.get(code, code)})")


class Cond(Frozen):
    """One test on ``args[arg]``.

    ``op`` is ``"eq"`` (all 64 bits equal), ``"ne"`` (some bit differs), ``"masked_eq"`` (``arg & mask ==
    value``, each 32-bit half tested only where the mask has bits), ``"gt32"`` / ``"lt32"`` (unsigned compare
    of the low 32 bits, for ``unsigned int`` parameters).
    """

    arg: int
    op: str
    value: int
    mask: int = _U64
    values: tuple[int, ...] = ()  # for "in"

    def __post_init__(self) -> None:
        if not 0 <= self.arg <= 5:
            raise ValueError(f"seccomp sees arguments 0..5, not {self.arg}")
        if self.op == "in":
            if not self.values or len({v >> 32 for v in self.values}) != 1:
                raise ValueError("'in' needs values that share their high 32 bits (split the set otherwise)")
            if not all(0 <= v <= _U64 for v in self.values):
                raise ValueError("condition values are unsigned 64-bit")
            return
        if self.op not in ("eq", "ne", "masked_eq", "gt32", "lt32"):
            raise ValueError(f"unknown condition {self.op!r}")
        if not (0 <= self.value <= _U64 and 0 <= self.mask <= _U64):
            raise ValueError("condition values are unsigned 64-bit")
        if self.op == "masked_eq" and self.value & ~self.mask:
            raise ValueError(f"value {self.value:#x} has bits outside mask {self.mask:#x}: it could never match")
        if self.op in ("gt32", "lt32") and self.value > _U32:
            raise ValueError("gt32/lt32 compare 32-bit values")

    def __str__(self) -> str:
        a = f"arg{self.arg}"
        if self.op == "eq":
            return f"{a} == {self.value:#x}"
        if self.op == "ne":
            return f"{a} != {self.value:#x}"
        if self.op == "gt32":
            return f"(u32){a} > {self.value:#x}"
        if self.op == "lt32":
            return f"(u32){a} < {self.value:#x}"
        if self.op == "in":
            return f"{a} in {{{', '.join(f'{v:#x}' for v in self.values)}}}"
        return f"({a} & {self.mask:#x}) == {self.value:#x}"


def eq(arg: int, value: int) -> Cond:
    """``args[arg] == value`` over all 64 bits (negative values are taken as two's complement)."""
    return Cond(arg, "eq", value & _U64)


def ne(arg: int, value: int) -> Cond:
    """``args[arg] != value`` over all 64 bits."""
    return Cond(arg, "ne", value & _U64)


def one_of(arg: int, values: Iterable[int]) -> Cond:
    """``args[arg]`` is one of *values* (all 64 bits), which must share their high 32 bits: one load of each
    half and one compare per value.  (Values with different high halves need one rule each: conditions of a
    rule are ANDed.)"""
    return Cond(arg, "in", 0, values=tuple(v & _U64 for v in values))


def masked_eq(arg: int, mask: int, value: int) -> Cond:
    """``args[arg] & mask == value``."""
    return Cond(arg, "masked_eq", value & _U64, mask & _U64)


def low32(arg: int, value: int) -> Cond:
    """The low 32 bits of ``args[arg]`` equal *value*: what the kernel sees of an ``int`` parameter."""
    return Cond(arg, "masked_eq", value & _U32, _U32)


def gt32(arg: int, value: int) -> Cond:
    """``(u32)args[arg] > value``: for ``unsigned int`` parameters such as fd numbers."""
    return Cond(arg, "gt32", value)


def lt32(arg: int, value: int) -> Cond:
    """``(u32)args[arg] < value``."""
    return Cond(arg, "lt32", value)


class Rule(Frozen):
    """*action* if every condition holds (an empty condition list always holds)."""

    action: Action
    conds: tuple[Cond, ...] = ()


@dataclass
class Block:
    """All the rules for one syscall number, tried in order, then *fallback*."""

    nr: int
    rules: list[Rule] = field(default_factory=list)
    fallback: Action = field(default_factory=lambda: ERRNO(_errno.ENOSYS))


# ----------------------------------------------------------------------------------------------------------------
# Assembler: labels, forward jumps, relaxation of far conditional jumps
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Insn:
    code: int
    k: int = 0
    jt: object = None  # label (str) or None = next instruction
    jf: object = None
    label: str | None = None  # when set, this is a label marker, not an instruction


class Assembler:
    """Collects instructions with symbolic forward jump targets and encodes them."""

    def __init__(self) -> None:
        self._items: list[_Insn] = []
        self._n = 0

    def new_label(self, hint: str = "L") -> str:
        self._n += 1
        return f"{hint}{self._n}"

    def place(self, label: str) -> None:
        self._items.append(_Insn(0, label=label))

    def ld(self, offset: int) -> None:
        self._items.append(_Insn(BPF_LD_W_ABS, offset))

    def and_(self, k: int) -> None:
        self._items.append(_Insn(BPF_ALU_AND_K, k & _U32))

    def jump(self, code: int, k: int, jt: str | None, jf: str | None) -> None:
        self._items.append(_Insn(code, k & _U32, jt, jf))

    def ret(self, action: Action) -> None:
        self._items.append(_Insn(BPF_RET_K, action.value))

    def assemble(self) -> list[tuple[int, int, int, int]]:
        """Lay out, relax far jumps, and return ``(code, jt, jf, k)`` tuples."""
        items = self._items
        long_jumps: set[int] = set()  # indexes into items of conditional jumps emitted as jcc+ja+ja
        while True:
            addr: dict[str, int] = {}
            pos: list[int] = []
            pc = 0
            for i, it in enumerate(items):
                pos.append(pc)
                if it.label is not None:
                    if it.label in addr:
                        raise ValueError(f"label {it.label} placed twice")
                    addr[it.label] = pc
                    continue
                pc += 3 if i in long_jumps else 1
            grew = False
            for i, it in enumerate(items):
                if it.label is not None or not _is_cond(it.code) or i in long_jumps:
                    continue
                for target in (it.jt, it.jf):
                    if target is not None and _offset(addr, target, pos[i]) > 255:
                        long_jumps.add(i)
                        grew = True
                        break
            if not grew:
                break
        out: list[tuple[int, int, int, int]] = []
        for i, it in enumerate(items):
            if it.label is not None:
                continue
            here = pos[i]
            if i in long_jumps:
                # jcc k, jt=+0 (the first ja), jf=+1 (the second ja); each ja jumps from its own position.
                out.append((it.code, 0, 1, it.k))
                out.append((BPF_JA, 0, 0, _target(addr, it.jt, here + 3) - (here + 2)))
                out.append((BPF_JA, 0, 0, _target(addr, it.jf, here + 3) - (here + 3)))
                continue
            if _is_cond(it.code):
                out.append((it.code, _offset(addr, it.jt, here), _offset(addr, it.jf, here), it.k))
            elif it.code == BPF_JA:
                out.append((it.code, 0, 0, _offset(addr, it.jt, here)))
            else:
                out.append((it.code, 0, 0, it.k))
        if len(out) > BPF_MAXINSNS:
            raise ValueError(f"program has {len(out)} instructions; the kernel accepts at most {BPF_MAXINSNS}")
        if out[-1][0] != BPF_RET_K:
            raise ValueError("a seccomp program must end in ret")
        return out


def _is_cond(code: int) -> bool:
    return code in (BPF_JEQ_K, BPF_JGT_K, BPF_JGE_K)


def _target(addr: dict[str, int], label: object, next_pc: int) -> int:
    """Absolute address of *label*, or *next_pc* (the instruction after the jump) for ``None``."""
    if label is None:
        return next_pc
    return addr[str(label)]


def _offset(addr: dict[str, int], label: object, here: int) -> int:
    if label is None:
        return 0
    off = addr[str(label)] - (here + 1)
    if off < 0:
        raise ValueError(f"backward jump to {label}: classic BPF jumps forward only")
    return off


# ----------------------------------------------------------------------------------------------------------------
# Program
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Program:
    """The encoded filter: ``(code, jt, jf, k)`` instructions, ready for ``SECCOMP_SET_MODE_FILTER``."""

    insns: list[tuple[int, int, int, int]]

    def __len__(self) -> int:
        return len(self.insns)

    def to_bytes(self) -> bytes:
        """``struct sock_filter[]``: ``__u16 code; __u8 jt; __u8 jf; __u32 k`` in native (little) endian."""
        return b"".join(struct.pack("<HBBI", c, jt, jf, k) for c, jt, jf, k in self.insns)

    def dump(self) -> str:
        """One line per instruction, for audits and failing tests."""
        names = {BPF_LD_W_ABS: "ld", BPF_ALU_AND_K: "and", BPF_JA: "ja", BPF_JEQ_K: "jeq", BPF_JGT_K: "jgt",
                 BPF_JGE_K: "jge", BPF_RET_K: "ret"}
        lines = []
        for pc, (c, jt, jf, k) in enumerate(self.insns):
            op = names.get(c, hex(c))
            if c in (BPF_JEQ_K, BPF_JGT_K, BPF_JGE_K):
                lines.append(f"{pc:4d}: {op} #{k:#x}, {pc + 1 + jt}, {pc + 1 + jf}")
            elif c == BPF_JA:
                lines.append(f"{pc:4d}: ja {pc + 1 + k}")
            elif c == BPF_LD_W_ABS:
                lines.append(f"{pc:4d}: ld [{k}]")
            else:
                lines.append(f"{pc:4d}: {op} #{k:#x}")
        return "\n".join(lines)

    def run(self, nr: int, args: Sequence[int] = (), arch: int = AUDIT_ARCH_X86_64) -> int:
        """Interpret the program for one syscall, as the kernel would: the seccomp return value.

        Used by tests to check the rule table for many argument values without a process per case; the real
        proof is still installing the program (tests do both).
        """
        full = [*(a & _U64 for a in args), *([0] * (6 - len(args)))]
        data = struct.pack("<iIQ6Q", nr if nr < 2**31 else nr - 2**32, arch, 0, *full)
        a = 0
        pc = 0
        while True:
            c, jt, jf, k = self.insns[pc]
            if c == BPF_LD_W_ABS:
                a = struct.unpack_from("<I", data, k)[0]
                pc += 1
            elif c == BPF_ALU_AND_K:
                a &= k
                pc += 1
            elif c == BPF_JA:
                pc += 1 + k
            elif c == BPF_JEQ_K:
                pc += 1 + (jt if a == k else jf)
            elif c == BPF_JGT_K:
                pc += 1 + (jt if a > k else jf)
            elif c == BPF_JGE_K:
                pc += 1 + (jt if a >= k else jf)
            elif c == BPF_RET_K:
                return k
            else:
                raise ValueError(f"unknown opcode {c:#x} at {pc}")


def _emit_cond(asm: Assembler, cond: Cond, fail: str) -> None:
    lo_off = OFF_ARGS + 8 * cond.arg
    hi_off = lo_off + 4
    lo, hi = cond.value & _U32, cond.value >> 32
    if cond.op == "eq":
        asm.ld(lo_off)
        asm.jump(BPF_JEQ_K, lo, None, fail)
        asm.ld(hi_off)
        asm.jump(BPF_JEQ_K, hi, None, fail)
    elif cond.op == "ne":
        ok = asm.new_label("ne")
        asm.ld(lo_off)
        asm.jump(BPF_JEQ_K, lo, None, ok)  # low halves differ: the values differ
        asm.ld(hi_off)
        asm.jump(BPF_JEQ_K, hi, fail, None)  # both halves equal: condition false
        asm.place(ok)
    elif cond.op == "masked_eq":
        m_lo, m_hi = cond.mask & _U32, cond.mask >> 32
        if m_lo:
            asm.ld(lo_off)
            if m_lo != _U32:
                asm.and_(m_lo)
            asm.jump(BPF_JEQ_K, lo, None, fail)
        if m_hi:
            asm.ld(hi_off)
            if m_hi != _U32:
                asm.and_(m_hi)
            asm.jump(BPF_JEQ_K, hi, None, fail)
    elif cond.op == "in":
        asm.ld(hi_off)
        asm.jump(BPF_JEQ_K, cond.values[0] >> 32, None, fail)
        asm.ld(lo_off)
        ok = asm.new_label("in")
        for v in cond.values[:-1]:
            asm.jump(BPF_JEQ_K, v & _U32, ok, None)
        asm.jump(BPF_JEQ_K, cond.values[-1] & _U32, None, fail)
        asm.place(ok)
    elif cond.op == "gt32":
        asm.ld(lo_off)
        asm.jump(BPF_JGT_K, lo, None, fail)
    elif cond.op == "lt32":
        asm.ld(lo_off)
        asm.jump(BPF_JGE_K, lo, fail, None)


def build(blocks: Iterable[Block], default: Action | None = None,
          x32: Action | None = None) -> Program:
    """Assemble *blocks* into a complete filter (arch check, x32 refusal, blocks, default).

    *default* (ERRNO(ENOSYS) unless given) answers every syscall number without a block; *x32* (the same by
    default) answers x32-ABI numbers. Two blocks for the same number are an error: the second could never run.
    """
    default = default or ERRNO(_errno.ENOSYS)
    x32 = x32 or ERRNO(_errno.ENOSYS)
    asm = Assembler()
    arch_ok = asm.new_label("arch_ok")
    asm.ld(OFF_ARCH)
    asm.jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, arch_ok, None)
    asm.ret(KILL_PROCESS)
    asm.place(arch_ok)
    native = asm.new_label("native")
    asm.ld(OFF_NR)
    asm.jump(BPF_JGE_K, X32_SYSCALL_BIT, None, native)
    asm.ret(x32)
    asm.place(native)
    seen: set[int] = set()
    for block in blocks:
        if block.nr in seen:
            raise ValueError(f"two blocks for syscall {NAME.get(block.nr, block.nr)}")
        if not 0 <= block.nr < X32_SYSCALL_BIT:
            raise ValueError(f"syscall number {block.nr} out of range")
        seen.add(block.nr)
        after = asm.new_label("after")
        asm.jump(BPF_JEQ_K, block.nr, None, after)  # A == nr on entry to every block (see module docstring)
        for rule in block.rules:
            if not rule.conds:  # always matches: later rules and the fallback are unreachable
                asm.ret(rule.action)
                break
            nxt = asm.new_label("next")
            for cond in rule.conds:
                _emit_cond(asm, cond, nxt)
            asm.ret(rule.action)
            asm.place(nxt)
        else:
            asm.ret(block.fallback)
        asm.place(after)
    asm.ret(default)
    return Program(asm.assemble())
