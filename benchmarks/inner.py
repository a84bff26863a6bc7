"""The workloads, written as ordinary Python: the same function runs natively and inside an enclave.

Each function does its own set-up, then times only the measured part with `time.perf_counter_ns` as the
program sees it (inside an enclave that clock may itself be an ocall: two reads per round cost nothing next to
thousands of measured operations), and returns plain data (ints), so it can be an ecall on every backend.
Names are looked up at call time (`os.pread`, not `from os import pread`) so that inside the enclave they are
the interposed ones.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

MSG = b"0123456789abcdef"  # 16 bytes
MIB = 1 << 20


def _clock() -> int:
    return time.perf_counter_ns()


def micro(name: str, n: int, workdir: str) -> int:
    """Nanoseconds for `n` repetitions of one small call (set-up and tear-down excluded)."""
    path = os.path.join(workdir, "micro.dat")
    if name == "pread_16B":
        fd = os.open(path, os.O_RDONLY)
        try:
            pread = os.pread
            t0 = _clock()
            for _ in range(n):
                pread(fd, 16, 0)
            return _clock() - t0
        finally:
            os.close(fd)
    if name == "stat":
        stat = os.stat
        t0 = _clock()
        for _ in range(n):
            stat(path)
        return _clock() - t0
    if name == "write_16B":
        fd = os.open(os.path.join(workdir, "write.dat"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write = os.write
            t0 = _clock()
            for _ in range(n):
                write(fd, MSG)
            return _clock() - t0
        finally:
            os.close(fd)
    if name in ("time", "monotonic"):
        clock = time.time if name == "time" else time.monotonic
        t0 = _clock()
        for _ in range(n):
            clock()
        return _clock() - t0
    if name == "echo_16B":
        # Ping-pong on a socketpair in one thread: send, receive on the peer, send back, receive.
        a, b = socket.socketpair()
        try:
            a.settimeout(10)
            b.settimeout(10)
            t0 = _clock()
            for _ in range(n):
                a.sendall(MSG)
                b.sendall(b.recv(16))
                a.recv(16)
            return _clock() - t0
        finally:
            a.close()
            b.close()
    raise ValueError(f"unknown micro benchmark {name!r}")


def bulk(name: str, mib: int, workdir: str) -> int:
    """Nanoseconds to move `mib` MiB through open() in 1 MiB reads or writes."""
    path = os.path.join(workdir, "bulk.dat")
    if name == "read_1MiB":
        with open(path, "rb") as f:
            t0 = _clock()
            total = 0
            while True:
                chunk = f.read(MIB)
                if not chunk:
                    break
                total += len(chunk)
            elapsed = _clock() - t0
        if total != mib * MIB:
            raise RuntimeError(f"read {total} bytes, expected {mib * MIB}")
        return elapsed
    if name == "write_1MiB":
        block = bytes(range(256)) * (MIB // 256)
        out = os.path.join(workdir, "bulk-out.dat")
        t0 = _clock()
        with open(out, "wb") as f:
            for _ in range(mib):
                f.write(block)
        elapsed = _clock() - t0
        if os.stat(out).st_size != mib * MIB:
            raise RuntimeError("short write")
        return elapsed
    raise ValueError(f"unknown bulk benchmark {name!r}")


def copytree(src: str, dst: str) -> int:
    """Nanoseconds for shutil.copytree of a tree of small files."""
    t0 = _clock()
    shutil.copytree(src, dst)
    return _clock() - t0


def asyncio_echo(count: int) -> int:
    """Nanoseconds for `count` 16-byte request/answer exchanges with an asyncio echo server on loopback."""
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def main() -> int:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = _clock()
        for _ in range(count):
            writer.write(MSG)
            await reader.readexactly(16)
        elapsed = _clock() - t0
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return elapsed

    return asyncio.run(asyncio.wait_for(main(), 300))


def http_requests(count: int) -> int:
    """Nanoseconds for `count` GET requests (one connection each, as HTTP/1.0) to an http.server on loopback."""
    import http.client
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's spelling
            body = b"hello, enclave\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # the base class's name
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 10
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        t0 = _clock()
        for _ in range(count):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/")
            response = conn.getresponse()
            if response.status != 200 or response.read() != b"hello, enclave\n":
                raise RuntimeError(f"bad answer {response.status}")
            conn.close()
        return _clock() - t0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def nothing() -> int:
    """An empty ecall: start-up of the enclave side (imports) before anything is measured."""
    return 0
