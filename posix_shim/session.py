"""Entering and leaving the enclave inside one process: the runtime activated, the standard streams rebuilt
over enclave fds 0-2, interposition installed - and all of it undone on the way out, in reverse order."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from enclave_libc import runtime
from enclave_libc.io import stdio_streams

from . import tripwires
from .interpose import Interposer, set_quietly

_STREAMS = ("stdin", "stdout", "stderr", "__stdin__", "__stdout__", "__stderr__")


def _flush(streams: tuple) -> None:
    for stream in streams:
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


@contextmanager
def inside(rt: runtime.EnclaveRuntime, interposer: Interposer | None = None) -> Iterator[Interposer]:
    interposer = interposer or Interposer()
    tripwires.install()  # dormant until sealed; idempotent
    saved = tuple(getattr(sys, name) for name in _STREAMS)
    _flush(saved[:3])  # what the host printed before must come out before what the enclave prints
    previous = runtime.activate(rt)
    try:
        stdin, stdout, stderr = stdio_streams()
        set_quietly(sys.__dict__, dict(zip(_STREAMS, (stdin, stdout, stderr) * 2, strict=True)))
        interposer.install()
        key = tripwires.enter()  # the audit hook refuses real host calls from here on (its key stays in this frame)
        try:
            yield interposer
        finally:
            _flush((sys.stdout, sys.stderr, stdout, stderr))
            try:
                tripwires.leave(key)
            finally:
                interposer.uninstall()
    finally:
        set_quietly(sys.__dict__, dict(zip(_STREAMS, saved, strict=True)))
        runtime.activate(previous)
