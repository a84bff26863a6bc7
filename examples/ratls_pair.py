"""Two enclaves, one sim and one process, exchange a secret over mutual RA-TLS; a third is refused by both.

    python examples/ratls_pair.py

What it does, in a temporary folder (every step is the command line a user would type):

1. `posix_shim keygen` makes a signer key; `posix_shim sign` measures `ratls_pair_enclave.py` (copied as
   pair.py) with the platform's public key as a trusted file, and a *rogue* copy that differs by one comment
   line (so: another measurement, same signer).
2. The server enclave (sim backend) makes a secret inside and serves it over mutual RA-TLS to peers that prove
   the same measurement as its own.
3. The client enclave (process backend) connects, proves itself, checks the server, and gets the secret.
4. The rogue enclave as a client: the server refuses it.  The rogue as a server: the client refuses it, naming
   the expected and the actual measurement.

Exit status 0 when all four outcomes are as described.  The platform key is this machine's simulated one
($POSIX_SHIM_PLATFORM_KEY or ~/.local/share/posix_shim/platform-key.pem), created on first use.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def shim(*args: str) -> list[str]:
    return [sys.executable, "-m", "posix_shim", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def run(args: list[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(manifest: str, backend: str, count: int, pub: str, cwd: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(shim("--backend", backend, "--manifest", manifest, "--", "server", str(port), str(count),
                                 pub), cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    line = proc.stdout.readline()
    print("  " + line.rstrip())
    if "listening" not in line:
        proc.kill()
        raise SystemExit(f"the server enclave did not start:\n{line}{proc.stdout.read()}")
    return proc, port


def main() -> int:
    sys.path.insert(0, REPO)
    from posix_shim import attestation

    work = tempfile.mkdtemp(prefix="ratls-pair-")
    try:
        shutil.copy(os.path.join(HERE, "ratls_pair_enclave.py"), os.path.join(work, "pair.py"))
        with open(os.path.join(HERE, "ratls_pair_enclave.py")) as f:
            rogue = f.read() + "\n# one more line: another program, another measurement\n"
        with open(os.path.join(work, "rogue.py"), "w") as f:
            f.write(rogue)
        pub = os.path.join(work, "platform.pub.pem")
        with open(pub, "wb") as f:
            f.write(attestation.platform_public_pem())
        print("1. signing")
        r = run(shim("keygen", "-o", "signer.pem"), work)
        if r.returncode:
            raise SystemExit(r.stderr)
        for name in ("pair", "rogue"):
            r = run(shim("sign", f"{name}.py", "--no-learn", "--allow-net=127.0.0.1", "--trusted", pub,
                         "--key", "signer.pem", "-o", f"{name}.toml"), work)
            if r.returncode:
                raise SystemExit(r.stderr)
            print(f"  {name}.py: " + " ".join(r.stderr.split()[3:6]))
        ok = True

        print("2./3. server enclave (sim) and client enclave (process)")
        server, port = start_server("pair.toml", "sim", 2, pub, work)
        client = run(shim("--backend", "process", "--manifest", "pair.toml", "--", "client", str(port), pub), work)
        print("  " + (client.stdout.strip() or client.stderr.strip()))
        ok &= client.returncode == 0 and "got the secret" in client.stdout

        print("4a. rogue enclave as a client (process)")
        rogue_client = run(shim("--backend", "process", "--manifest", "rogue.toml", "--", "client", str(port), pub),
                           work)
        print("  " + (rogue_client.stdout.strip() or rogue_client.stderr.strip()))
        out, _ = server.communicate(timeout=60)
        print("  " + out.strip().replace("\n", "\n  "))
        ok &= rogue_client.returncode != 0 and "server: refused a client" in out and "wrong measurement" in out
        fingerprint = client.stdout.split()[-1] if client.stdout.split() else "?"
        ok &= f"secret fingerprint {fingerprint}" in out

        print("4b. rogue enclave as a server (sim), the genuine client (process) connects")
        rogue_server, port = start_server("rogue.toml", "sim", 1, pub, work)
        client = run(shim("--backend", "process", "--manifest", "pair.toml", "--", "client", str(port), pub), work)
        print("  " + (client.stdout.strip() or client.stderr.strip()))
        rogue_out, _ = rogue_server.communicate(timeout=60)
        ok &= client.returncode == 3 and "wrong measurement: expected" in client.stdout
        print("all as expected" if ok else "UNEXPECTED OUTCOME")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
