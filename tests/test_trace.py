"""Tracing, the summary and host-side fault injection, as a user sees them.

End-to-end tests run the real CLI (`run_shim`) on every backend; the library-API tests run a sim enclave in this
process, where the host can be made to lie.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
from pathlib import Path

import pytest
from conftest import run_shim

from ocall_bridge import inject
from ocall_bridge.access import ALLOW_ALL, Access
from ocall_bridge.calls import BY_NAME
from posix_shim import Enclave
from posix_shim.trace import parse_filter
from posix_shim.trace_format import TraceEvent, format_text, quote

LINE = re.compile(r"^\[(\d+)\] (\w+)\((.*)\) = (.*) <[\d.]+us>$")

FILE_PROGRAM = """
with open("data.csv") as f:
    rows = f.read()
with open("out.txt", "w") as f:
    f.write(rows.upper())
print("done")
"""


def _lines(text: str) -> list[re.Match]:
    return [m for m in map(LINE.match, text.splitlines()) if m]


def _summary_rows(stderr: str) -> dict[str, tuple[int, int]]:
    """call -> (calls, errors) from the strace -c table."""
    rows = {}
    for line in stderr.splitlines():
        parts = line.split()
        if len(parts) in (5, 6) and re.fullmatch(r"\d+\.\d\d", parts[0]) and parts[-1] != "total":
            calls = int(parts[3])
            errors = int(parts[4]) if len(parts) == 6 else 0
            rows[parts[-1]] = (calls, errors)
    return rows


# -- end to end ------------------------------------------------------------------------------------------


def test_a_traced_file_program_shows_each_call_and_the_summary_counts_them(backend: str, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "prog.py").write_text(FILE_PROGRAM)
    proc = run_shim(["prog.py"], backend=backend, cwd=tmp_path,
                    options=["--trace-output=trace.txt", "--summary"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"done\n"
    assert (tmp_path / "out.txt").read_text() == "A,B\n1,2\n"
    trace = (tmp_path / "trace.txt").read_text()
    lines = _lines(trace)
    assert len(lines) == len(trace.splitlines()), "every line has the strace shape"

    data_csv = json.dumps(str(tmp_path / "data.csv"))
    opened = [m for m in lines if m[2] == "open" and m[3].startswith(data_csv)]
    assert len(opened) == 1
    assert opened[0][3].startswith(f"{data_csv}, O_RDONLY|O_CLOEXEC, ")
    handle = opened[0][4]
    assert handle.isdigit()
    reads = [m for m in lines if m[2] == "read" and m[3].startswith(f"{handle},")]
    assert reads[0][4] == '8 "a,b\\n1,2\\n"'  # the bytes the host returned, as strace shows a buffer
    assert reads[-1][4] == '0 ""'  # end of file
    assert [m[4] for m in lines if m[2] == "close" and m[3] == handle] == ["0"]

    out_txt = json.dumps(str(tmp_path / "out.txt"))
    opened = [m for m in lines if m[2] == "open" and m[3].startswith(out_txt)]
    umask = os.umask(0o22)
    os.umask(umask)
    assert opened[0][3] == f"{out_txt}, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0{0o666 & ~umask:o}"
    out = opened[0][4]
    assert [(m[3], m[4]) for m in lines if m[2] == "write" and m[3].startswith(f"{out},")] == [
        (f'{out}, "A,B\\n1,2\\n"', "8")]
    assert [m[4] for m in lines if m[2] == "close" and m[3] == out] == ["0"]

    # The summary counts exactly the lines of the trace, call by call.
    rows = _summary_rows(proc.stderr.decode())
    per_call: dict[str, int] = {}
    for m in lines:
        per_call[m[2]] = per_call.get(m[2], 0) + 1
    if backend != "sim":
        # The enclave's own events (inside calls) are written by the enclave process; the host's summary counts
        # what the host served.
        per_call = {k: v for k, v in per_call.items() if not BY_NAME[k].inside}
    assert {k: v[0] for k, v in rows.items()} == per_call
    failed = sum(1 for m in lines if m[4].startswith("-1 ") and (backend == "sim" or not BY_NAME[m[2]].inside))
    assert sum(v[1] for v in rows.values()) == failed


def test_write_short_still_writes_10_mb_exactly(backend: str, tmp_path: Path) -> None:
    # Nothing is printed: with PYTHONUNBUFFERED, a native sys.stdout drops the rest of a short write too.
    program = (
        "import random\n"
        "data = random.Random(7).randbytes(10 * 1024 * 1024 + 4321)\n"
        "with open('big.bin', 'wb') as f:\n"
        "    f.write(data)\n"
        "    f.write(b'tail' * 1000)\n"
    )
    proc = run_shim(["-c", program], backend=backend, cwd=tmp_path,
                    options=["--inject", "write:short", "--trace=write"])
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    expected = random.Random(7).randbytes(10 * 1024 * 1024 + 4321) + b"tail" * 1000
    written = (tmp_path / "big.bin").read_bytes()
    assert len(written) == len(expected)
    assert hashlib.sha256(written).digest() == hashlib.sha256(expected).digest()
    shortened = [m for m in _lines(proc.stderr.decode()) if "(INJECTED short" in m[4]]
    assert len(shortened) >= 10, "the host really cut the writes short"
    for m in shortened:  # each answer is the shortened count, never what was asked
        asked, got = re.search(r"INJECTED short (\d+) of (\d+)", m[4]).groups()
        assert m[4].startswith(f"{asked} ") and int(asked) < int(got)


def test_open_error_eacces_when_3_fails_exactly_the_third_open(backend: str, tmp_path: Path) -> None:
    program = (
        "for i in range(5):\n"
        "    try:\n"
        "        open(f'f{i}', 'w').close()\n"
        "        print(i, 'ok')\n"
        "    except OSError as e:\n"
        "        print(i, type(e).__name__, e.errno, e.strerror, e.filename)\n"
    )
    proc = run_shim(["-c", program], backend=backend, cwd=tmp_path,
                    options=["--inject", "open:error=EACCES:when=3"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().splitlines() == [
        "0 ok", "1 ok", "2 PermissionError 13 Permission denied f2", "3 ok", "4 ok"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0", "f1", "f3", "f4"]


def test_read_short_and_enospc_reach_the_program_as_natively(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("".join(f"line {i}\n" for i in range(2000)))
    program = (
        "import os\n"
        "try:\n"
        "    with open('out', 'wb') as f:\n"
        "        f.write(b'x' * 100)\n"
        "except OSError as e:\n"
        "    failed = f'{type(e).__name__} {e.errno} {os.strerror(e.errno)}'\n"
        "lines = open('in.txt').readlines()\n"
        "print(len(lines), lines[-1].strip())\n"
        "print(failed)\n"
    )
    # The first write ocall is the flush of 'out': the program prints nothing before it.
    proc = run_shim(["-c", program], cwd=tmp_path,
                    options=["--inject", "read:short=7", "--inject", "write:error=ENOSPC:when=1", "--summary"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().splitlines() == ["2000 line 1999", "OSError 28 No space left on device"]
    calls, errors = _summary_rows(proc.stderr.decode())["read"]
    assert calls > len("".join(f"line {i}\n" for i in range(2000))) // 7  # every read really was short


def test_delay_is_served_late(tmp_path: Path) -> None:
    program = "import os, time\nfd = os.open('f', os.O_WRONLY | os.O_CREAT)\nt = time.monotonic()\n" \
              "os.fsync(fd)\nprint(time.monotonic() - t >= 0.2)\n"
    proc = run_shim(["-c", program], cwd=tmp_path, options=["--inject", "fsync:delay=200", "--trace=fsync"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"True\n"
    (line,) = _lines(proc.stderr.decode())
    assert line[2] == "fsync" and "(INJECTED delay=200ms)" in line[4]


def test_the_trace_goes_to_the_hosts_stderr_even_when_the_program_closes_its_own(backend: str,
                                                                                  tmp_path: Path) -> None:
    program = "import os, sys\nsys.stderr.close()\nos.close(2)\nopen('after-close', 'w').close()\n"
    proc = run_shim(["-c", program], backend=backend, cwd=tmp_path, options=["--trace=open,close"])
    assert proc.returncode == 0, proc.stderr.decode()
    opened = [m for m in _lines(proc.stderr.decode()) if m[2] == "open" and "after-close" in m[3]]
    assert len(opened) == 1 and opened[0][4].isdigit()


def test_json_lines_and_filters(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x\n")
    proc = run_shim(["-c", "import os\nopen('data.csv').read()\nos.stat('data.csv')\nos.getcwd()\n"],
                    cwd=tmp_path, options=["--trace=open,stat,%inside", "--trace-format=json"])
    assert proc.returncode == 0, proc.stderr.decode()
    events = [json.loads(line) for line in proc.stderr.decode().splitlines()]
    assert {e["call"] for e in events} <= {"open", "stat"} | {c for c in BY_NAME if BY_NAME[c].inside}
    (opened,) = [e for e in events if e["call"] == "open"]
    assert opened["args"]["path"] == str(tmp_path / "data.csv")
    assert opened["args"]["flags"] == "O_RDONLY|O_CLOEXEC"
    assert isinstance(opened["result"], int) and opened["errno"] == 0 and opened["duration_ns"] > 0
    assert any(e["call"] == "getcwd" and e["marks"] == ["inside"] and e["result"] == str(tmp_path)
               for e in events)
    stat = [e for e in events if e["call"] == "stat" and e["args"]["path"].endswith("data.csv")]
    assert stat and stat[0]["result"]["size"] == 2


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    for options, message in ((["--inject", "read:error=ENOSPC"], "read cannot fail with ENOSPC"),
                             (["--inject", "stat:short"], "transfer no bytes"),
                             (["--inject", "open:when=2"], "nothing to inject"),
                             (["--trace-filter=files,nosuchcall"], "nosuchcall")):
        proc = run_shim(["-c", "pass"], cwd=tmp_path, options=options)
        assert proc.returncode == 2
        assert message in proc.stderr.decode()


# -- the library API ---------------------------------------------------------------------------------------


class DenySecrets(Access):
    def check(self, call: str, kind: str, resource: object) -> str | None:
        if isinstance(resource, bytes) and b"secret" in resource:
            return "secrets are off limits (policy rule: deny secret*)"
        return None


def test_library_events_mark_inside_calls_denials_and_threads(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("hello")
    events: list[TraceEvent] = []
    code = (
        f"import os\nos.chdir({str(tmp_path)!r})\n"
        "fd = os.open('data.csv', os.O_RDONLY)\nassert os.read(fd, 100) == b'hello'\nfd2 = os.dup(fd)\n"
        "os.close(fd)\nos.close(fd2)\nos.getcwd()\n"
        "try:\n    open('secret.txt')\nexcept PermissionError as e:\n    assert e.errno == 13\n"
        "else:\n    raise SystemExit('not denied')\n"
    )
    with Enclave(policy=DenySecrets(), backend="sim", trace=events.append) as enclave:
        assert enclave.run_code(code) == 0
    assert all(isinstance(e, TraceEvent) for e in events)
    me = threading.get_native_id()
    assert {e.thread for e in events} == {me}
    names = [e.call for e in events]
    assert "dup" in names and "getcwd" in names and "chdir" in names
    for e in events:
        assert (e.marks[:1] == ("inside",)) == BY_NAME[e.call].inside
    (opened,) = [e for e in events if e.call == "open" and e.args[0].endswith(b"data.csv")]
    assert opened.errno == 0 and isinstance(opened.result, int) and opened.duration_ns > 0
    (read,) = [e for e in events if e.call == "read" and e.args[0] == opened.result]
    assert read.result == b"hello"
    (denied,) = [e for e in events if e.marks and e.marks[0].startswith("denied")]
    assert denied.call == "open" and denied.errno == 13 and denied.args[0].endswith(b"secret.txt")
    assert "policy rule: deny secret*" in denied.marks[0]
    assert "(denied: secrets are off limits" in format_text(denied)


def test_host_violations_are_marked(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789" * 4)
    events: list[TraceEvent] = []
    with Enclave(ALLOW_ALL, backend="sim", trace=events.append) as enclave:
        host = enclave._running().host
        number = BY_NAME["pread"].number
        host.entries[number].fn = lambda host, h, count, offset: b"x" * (count + 1)  # a lying host
        code = (f"import os\nfd = os.open({str(tmp_path / 'f')!r}, os.O_RDONLY)\n"
                "try:\n    os.pread(fd, 16, 0)\nexcept OSError as e:\n    assert e.errno == 5, e\n"
                "else:\n    raise SystemExit('the lie was believed')\n")
        assert enclave.run_code(code) == 0
    served, refused = [e for e in events if e.call == "pread"]
    assert served.errno == 0 and len(served.result) == 17  # what the host claimed
    assert refused.errno == 5 and not refused.counted
    assert refused.marks[0].startswith("HOST VIOLATION: ")
    assert "HOST VIOLATION" in format_text(refused)


def test_a_callback_that_makes_ocalls_is_not_traced_itself(tmp_path: Path) -> None:
    events: list[TraceEvent] = []

    def callback(ev: TraceEvent) -> None:
        events.append(ev)
        if ev.call == "open":
            os.write(1, b"seen open\n")  # an ocall inside the enclave, from inside the tracer

    code = f"open({str(tmp_path / 'x')!r}, 'w').close()\n"
    with Enclave(ALLOW_ALL, backend="sim", trace=callback, trace_filter="files") as enclave:
        assert enclave.run_code(code) == 0
    assert [e.call for e in events if e.call == "open"] == ["open"]
    assert not [e for e in events if e.call == "write" and e.args[1] == b"seen open\n"]
    assert {e.call for e in events} <= {c for c in BY_NAME if BY_NAME[c].family == "files"}


def test_a_failing_callback_does_not_fail_the_program(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    def callback(ev: TraceEvent) -> None:
        raise RuntimeError("bug in the tool")

    with Enclave(ALLOW_ALL, backend="sim", trace=callback) as enclave:
        assert enclave.run_code(f"open({str(tmp_path / 'x')!r}, 'w').write('ok')\n") == 0
    assert (tmp_path / "x").read_text() == "ok"
    assert capfd.readouterr().err.count("the trace callback raised RuntimeError: bug in the tool") == 1


def test_summary_and_injection_through_the_library(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with Enclave(policy=ALLOW_ALL, summary=True, inject=["unlink:error=EBUSY:when=2+"]) as enclave:
        code = (f"import os\nd = {str(tmp_path)!r}\n"
                "for i in range(3):\n    open(f'{d}/{i}', 'w').close()\n"
                "errs = []\nfor i in range(3):\n    try:\n        os.unlink(f'{d}/{i}')\n"
                "    except OSError as e:\n        errs.append(e.errno)\nassert errs == [16, 16], errs\n")
        assert enclave.run_code(code) == 0
    err = capfd.readouterr().err
    assert _summary_rows(err)["unlink"] == (3, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]


# -- units ------------------------------------------------------------------------------------------------


def test_lines_are_derived_from_the_table() -> None:
    ev = TraceEvent(12, "open", (b"data.csv", os.O_RDONLY | os.O_CLOEXEC, 0), 3, 0, 9000)
    assert format_text(ev) == '[12] open("data.csv", O_RDONLY|O_CLOEXEC, 0) = 3 <9us>'
    ev = TraceEvent(1, "lseek", (3, -2, os.SEEK_END), None, 22, 500, ("INJECTED EINVAL",))
    assert format_text(ev) == "[1] lseek(3, -2, SEEK_END) = -1 EINVAL (Invalid argument) (INJECTED EINVAL) <0.5us>"
    ev = TraceEvent(1, "pipe", (os.O_NONBLOCK,), (4, 5), 0, 2000)
    assert format_text(ev) == "[1] pipe(O_NONBLOCK) = {read_fd=4, write_fd=5} <2us>"
    assert quote(b"x" * 40) == '"' + "x" * 32 + '"...'
    assert quote(b"a\n\x00\"") == '"a\\n\\x00\\""'


def test_filters() -> None:
    assert parse_filter(None) is None
    assert parse_filter("open,close") == {"open", "close"}
    files = parse_filter("files")
    assert "read" in files and "dup" in files and "clock_gettime" not in files
    assert "read" not in parse_filter("files,!read")
    assert parse_filter("%path") >= {"open", "stat", "unlink"} and "read" not in parse_filter("%path")
    with pytest.raises(ValueError):
        parse_filter("opne")


def test_injection_rules() -> None:
    rule = inject.parse("open:error=EACCES:when=3")
    assert [rule.hits(n) for n in range(1, 6)] == [False, False, True, False, False]
    rule = inject.parse("read,write:short:when=2+3")
    assert rule.calls == {"read", "write"} and rule.short == -1
    assert [n for n in range(1, 12) if rule.hits(n)] == [2, 5, 8, 11]
    assert [n for n in range(1, 5) if inject.parse("fsync:delay=1:when=2+").hits(n)] == [2, 3, 4]
    assert inject.parse("files:error=ENOSPC").calls >= {"write", "open"}
    assert "read" not in inject.parse("files:error=ENOSPC").calls  # read cannot fail with ENOSPC
    for bad in ("open", "open:error=EWHAT", "dup:error=EIO", "open:short", "open:when=0:error=EIO"):
        with pytest.raises(inject.InjectSpecError):
            inject.parse(bad)


def test_sendall_sends_everything_under_short_sends(tmp_path: Path) -> None:
    pytest.importorskip("enclave_libc.sockets", reason="the sockets family is not part of this build")
    program = (
        "import hashlib, socket, threading\n"
        "a, b = socket.socketpair()\n"
        "a.settimeout(120); b.settimeout(120)\n"
        "data = bytes(range(256)) * 4000\n"
        "got = []\n"
        "def reader():\n"
        "    while sum(map(len, got)) < len(data):\n"
        "        chunk = b.recv(65536)\n"
        "        if not chunk:\n"
        "            break\n"
        "        got.append(chunk)\n"
        "t = threading.Thread(target=reader); t.start()\n"
        "a.sendall(data)\n"
        "t.join(120)\n"
        "print(b''.join(got) == data)\n"
    )
    proc = run_shim(["-c", program], cwd=tmp_path, options=["--inject", "send,sendto:short=1000", "--summary"],
                    timeout=240)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"True\n"
    rows = _summary_rows(proc.stderr.decode())
    assert rows.get("send", (0, 0))[0] + rows.get("sendto", (0, 0))[0] >= 256 * 4000 // 1000
