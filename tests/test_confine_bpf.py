"""The seccomp BPF builder, proved by the kernel: each program is installed in a fresh child process, which makes
the syscalls and prints what the kernel answered; the parent compares with what the program must mean (and
with the builder's own interpreter, which other tests use for quick table checks)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import program

from posix_shim.confine import bpf
from posix_shim.confine.syscalls import NR

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64",
                                reason="x86_64 Linux seccomp")

CHILD = program("confine_bpf_child.py")


RUNTIME = ("write", "exit_group", "exit", "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "futex",
           "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "close", "getpid", "gettid", "sigaltstack")


def build(blocks: list[bpf.Block]) -> bpf.Program:
    """*blocks* plus ALLOW for what the child's Python needs to print its results and exit."""
    taken = {b.nr for b in blocks}
    return bpf.build(blocks + [bpf.Block(NR[n], [bpf.Rule(bpf.ALLOW)]) for n in RUNTIME if NR[n] not in taken])


def install_and_call(program: bpf.Program, calls: list[tuple[int, list[int]]]) -> tuple[list[str], int]:
    spec = json.dumps({"program": program.to_bytes().hex(), "calls": calls})
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", CHILD, spec], capture_output=True, text=True, env=env, timeout=60)
    return proc.stdout.split("\n")[:-1], proc.returncode


def expected(program: bpf.Program, nr: int, args: list[int]) -> str:
    ret = program.run(nr, args)
    if ret == bpf.SECCOMP_RET_ALLOW:
        return "OK"
    assert ret & 0xFFFF0000 == bpf.SECCOMP_RET_ERRNO, hex(ret)
    return "ERR " + errno.errorcode[ret & 0xFFFF]


GETPPID = NR["getppid"]  # ignores its arguments: the filter's verdict is all we observe


def test_conditions_64bit_both_halves() -> None:
    """eq, ne, masked_eq, in, gt32, lt32 each decide on the value the kernel passes, both 32-bit halves."""
    big = 0x1234_5678_9ABC_DEF0
    blocks = [
        bpf.Block(GETPPID, [
            bpf.Rule(bpf.ERRNO(errno.EXDEV), (bpf.eq(0, big),)),
            bpf.Rule(bpf.ERRNO(errno.EDOM), (bpf.ne(1, 7), bpf.eq(0, 1))),
            bpf.Rule(bpf.ERRNO(errno.ERANGE), (bpf.masked_eq(2, 0xF0_0000_0000_0000_0F, 0x10_0000_0000_0000_01),)),
            bpf.Rule(bpf.ERRNO(errno.ENOTTY), (bpf.one_of(3, [5, 9]),)),
            bpf.Rule(bpf.ERRNO(errno.ENOTTY), (bpf.one_of(3, [1 << 40, 3 | (1 << 40)]),)),
            bpf.Rule(bpf.ERRNO(errno.EMLINK), (bpf.gt32(4, 100), bpf.lt32(4, 200))),
            bpf.Rule(bpf.ALLOW),
        ]),
    ]
    program = build(blocks)
    cases = [
        [big], [big ^ (1 << 40)], [big ^ 1],                       # eq: either half differing breaks it
        [1, 8], [1, 7], [1, 7 | (1 << 32)],                        # ne: a high-half difference is a difference
        [0, 0, 0x10_0000_0000_0000_01], [0, 0, 0x1F_FFFF_FFFF_FFFF_F1], [0, 0, 0x10_0000_0000_0000_02],
        [0, 0, 0x20_0000_0000_0000_01],
        [0, 0, 0, 5], [0, 0, 0, 9], [0, 0, 0, 6], [0, 0, 0, 1 << 40], [0, 0, 0, 5 | (1 << 40)],
        [0, 0, 0, 3 | (1 << 40)], [0, 0, 0, 3],
        [0, 0, 0, 0, 150], [0, 0, 0, 0, 100], [0, 0, 0, 0, 200], [0, 0, 0, 0, 150 | (1 << 32)],
    ]
    want = ["ERR EXDEV", "OK", "OK",
            "ERR EDOM", "OK", "ERR EDOM",
            "ERR ERANGE", "ERR ERANGE", "OK", "OK",
            "ERR ENOTTY", "ERR ENOTTY", "OK", "ERR ENOTTY", "OK", "ERR ENOTTY", "OK",
            "ERR EMLINK", "OK", "OK", "ERR EMLINK"]  # gt32/lt32 read only the low half
    assert [expected(program, GETPPID, a) for a in cases] == want
    got, rc = install_and_call(program, [(GETPPID, a) for a in cases])
    assert rc == 0
    assert got == want


def test_default_and_x32_and_other_syscalls() -> None:
    """A syscall with no block gets the default (ENOSYS); x32 numbers get ENOSYS even for allowed calls."""
    program = build([])
    got, rc = install_and_call(program, [(NR["getpid"], []), (NR["getppid"], []),
                                         (NR["getpid"] | 0x40000000, [])])
    assert (got, rc) == (["OK", "ERR ENOSYS", "ERR ENOSYS"], 0)


def test_long_program_relaxes_far_jumps() -> None:
    """A rule with 130 conditions puts its failure target more than 255 instructions away: the assembler emits
    jcc+ja+ja there, and the kernel runs it as meant, for the first, a middle and the last condition."""
    values = [1000 + i for i in range(130)]
    rule = bpf.Rule(bpf.ERRNO(errno.EXDEV), tuple(bpf.ne(0, v) for v in values))
    program = build([bpf.Block(GETPPID, [rule, bpf.Rule(bpf.ALLOW)])])
    assert len(program) > 255
    assert any(code == bpf.BPF_JA for code, *_ in program.insns), "no long jump was needed: test is vacuous"
    cases = [[5], [1000], [1064], [1129], [1130], [1000 | (1 << 32)]]
    want = ["ERR EXDEV", "OK", "OK", "OK", "ERR EXDEV", "ERR EXDEV"]
    assert [expected(program, GETPPID, a) for a in cases] == want
    got, rc = install_and_call(program, [(GETPPID, a) for a in cases])
    assert (got, rc) == (want, 0)


def test_program_shape_and_limits() -> None:
    assert len(bpf.build([bpf.Block(n, [bpf.Rule(bpf.ALLOW)]) for n in range(300)])) == 6 + 2 * 300 + 1
    with pytest.raises(ValueError, match="at most 4096"):
        bpf.build([bpf.Block(n, [bpf.Rule(bpf.ERRNO(1), (bpf.eq(0, 1),))]) for n in range(800)])
    with pytest.raises(ValueError, match="two blocks"):
        bpf.build([bpf.Block(1), bpf.Block(1)])
    with pytest.raises(ValueError, match="high 32 bits"):
        bpf.one_of(0, [1, 1 << 32])
    with pytest.raises(ValueError, match="outside mask"):
        bpf.masked_eq(0, 0xF, 0x10)


def test_wrong_architecture_kills_the_process() -> None:
    """An i386 syscall (int 0x80) from a 64-bit process carries AUDIT_ARCH_I386: KILL_PROCESS, since its numbers
    mean other calls (20 is getpid there, but would be writev here)."""
    program = build([])
    code = r"""
import ctypes, mmap, sys
from posix_shim.confine import _native
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3]))  # mov eax, 20 (i386 getpid); int 0x80; ret
fn = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))
if sys.argv[1] == "filter":
    prog = bytes.fromhex(sys.argv[2])
    data = _native.from_bytes(prog)
    fprog = _native.new("struct sock_fprog *")
    fprog.len = len(prog) // 8
    fprog.filter = data
    _native.syscall("seccomp", 1, 0, fprog)
print("i386 getpid returned", fn(), flush=True)
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    control = subprocess.run([sys.executable, "-c", code, "none"], capture_output=True, text=True, env=env)
    if control.returncode != 0:
        pytest.skip(f"no ia32 emulation in this kernel: {control.returncode}")
    assert "i386 getpid returned" in control.stdout
    proc = subprocess.run([sys.executable, "-c", code, "filter", program.to_bytes().hex()], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == -signal.SIGSYS
    assert proc.stdout == ""
