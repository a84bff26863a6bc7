"""The runtime's own warnings reach the host's stderr, never the program's stdout or its sys.stderr stream."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO


def test_a_refused_host_answer_is_logged_on_the_host_stderr_not_in_the_program(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_bytes(b"0123456789")
    program = textwrap.dedent(f"""
        import io, os, sys
        captured = io.StringIO()
        real_stderr, sys.stderr = sys.stderr, captured
        fd = os.open({str(data)!r}, os.O_RDONLY)
        try:
            os.pread(fd, 4, 0)
        except OSError as exc:
            print("program saw:", exc.errno)
        sys.stderr = real_stderr
        print("program stderr stream got:", repr(captured.getvalue()))
    """)
    script = textwrap.dedent(f"""
        from posix_shim import Enclave
        from ocall_bridge.access import ALLOW_ALL
        from ocall_bridge.host import files
        from ocall_bridge.originals import os as real_os
        # A lying host: one byte more than asked.
        files.pread = lambda host, h, count, offset: real_os.pread(h.fd, count + 1, offset)
        with Enclave(ALLOW_ALL, backend="sim") as enclave:
            print("status", enclave.run_code({program!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "program saw: 5" in proc.stdout
    assert "program stderr stream got: ''" in proc.stdout
    assert "host violation in pread: data is 5, more than count=4" not in proc.stdout
    assert "posix_shim: host violation in pread: data is 5, more than count=4" in proc.stderr
