"""`python -m benchmarks.forwarded [--n N]`: the round trip of a native syscall forwarded to the host.

A child Python measures `os.stat` and `os.open`+`os.close` on a granted file natively, then confines itself with
the process backend's real confinement (`posix_shim.confine.confine_process`, forwarding `native.FORWARDED`),
hands its seccomp listener to this process, and measures the same calls again: each now stops in the kernel,
is served by `ocall_bridge.host.supervisor.Supervisor` through `Host.perform` (policy re-check, openat2
confinement) and answered (a struct stat written back, a descriptor installed with ADDFD).  Medians of N calls,
in microseconds; the budget is 20 us per forwarded call.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from ocall_bridge.host.runtime import Host  # noqa: E402
from ocall_bridge.host.supervisor import Supervisor  # noqa: E402
from posix_shim import policy  # noqa: E402

CHILD = r"""
import json, os, socket, statistics, sys, time
from ocall_bridge.native import FORWARDED
from posix_shim.confine import confine_process
chan_fd, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def median(fn):
    out = []
    for _ in range(n):
        t = time.perf_counter_ns(); fn(); out.append(time.perf_counter_ns() - t)
    return statistics.median(out) / 1000
def figures():
    return {"stat": median(lambda: os.stat(path)), "open_close": median(lambda: os.close(os.open(path, os.O_RDONLY)))}
native = figures()
listener = confine_process(forward=FORWARDED, channel_fds=[chan_fd])
socket.send_fds(socket.socket(fileno=chan_fd), [b"L"], [listener])
os.close(listener)
forwarded = figures()
os.write(1, json.dumps({"native": native, "forwarded": forwarded}).encode())
"""


def measure(n: int = 2000) -> dict[str, dict[str, float]]:
    """{"native": {...}, "forwarded": {...}}: medians in us for "stat" and "open_close"."""
    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "f"
        target.write_bytes(b"x")
        parser = argparse.ArgumentParser()
        policy.add_arguments(parser)
        access = policy.build(parser.parse_args([]), "code", None, cwd=d)
        a, b = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(b.fileno()), str(target), str(n)],
                                pass_fds=[b.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        b.close()
        sup = None
        try:
            a.settimeout(120)
            _, fds, _, _ = socket.recv_fds(a, 16, 1)
            if len(fds) != 1:
                proc.kill()
                raise RuntimeError(f"the child did not confine itself: {proc.communicate()[1].decode()}")
            sup = Supervisor(Host(access), fds[0], proc.pid, lambda: os.fsencode(d))
            sup.start()
            out, err = proc.communicate(timeout=120)
            if proc.returncode:
                raise RuntimeError(err.decode())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if sup is not None:
                sup.close()
            a.close()
    return json.loads(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.forwarded", description=__doc__.split("\n\n")[1])
    parser.add_argument("--n", type=int, default=2000, help="calls per figure (median reported)")
    args = parser.parse_args(argv)
    r = measure(args.n)
    for name in ("stat", "open_close"):
        native, fwd = r["native"][name], r["forwarded"][name]
        print(f"{name:<11} native {native:6.1f} us   forwarded {fwd:6.1f} us   (+{fwd - native:.1f} us per call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
