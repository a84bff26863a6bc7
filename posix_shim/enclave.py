"""The library API: `Enclave`, a context manager that runs code inside an enclave.

    from posix_shim import Enclave
    with Enclave() as enclave:                   # the confined process backend, the default policy
        status = enclave.run_path("app.py", ["--flag"])
        total = enclave.call("mymodule:summarize", "data.csv")

Lifecycle: created -> running (on __enter__ or start()) -> finalized (on __exit__ or close()).  Calls after
finalize raise `EnclaveStateError`.  `call` is an ecall: its arguments and result must be plain data (None,
bool, int, float, str, bytes, lists/tuples and str-keyed dicts of those) because on the process backend they
cross the boundary, and nothing that crosses is ever unpickled.
"""

from __future__ import annotations

from typing import Any, Protocol

from ocall_bridge.access import Access

from .ecall import (  # noqa: F401  (the errors are part of this module's API)
    EnclaveCallError,
    EnclaveStateError,
    EnclaveUnavailable,
    check_plain,
    resolve_target,
)

BACKENDS = ("sim", "process")
# Secure by default: the kernel-confined backend.  sim is a flag away and confines Python code only.
DEFAULT_BACKEND = "process"


class Backend(Protocol):
    def run(self, kind: str, target: str, args: list[str]) -> int: ...

    def call(self, target: str, args: tuple) -> Any: ...

    def close(self) -> None: ...


def _measure(backend: Any, kind: str, target: str) -> None:
    """The host records the identity of what it is about to run (sealing keys are derived from it)."""
    host = getattr(backend, "host", None)
    if host is not None:
        from ocall_bridge.host import sealing  # the host's side only: the enclave process never needs it

        sealing.measure(host, kind, target)


def make_backend(name: str, access: Access, options: dict[str, Any]) -> Backend:
    # The platform states which backend it launched in every quote (attestation.py).
    options = {**options, "identity": {**(options.get("identity") or {}), "backend": name}}
    if name == "sim":
        from .sim_backend import SimBackend

        return SimBackend(access, **options)
    if name == "process":
        try:
            from .process_backend import ProcessBackend
        except ImportError as exc:  # pragma: no cover - until the process backend lands
            raise ValueError("the process backend is not available in this build") from exc
        return ProcessBackend(access, **options)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


class Enclave:
    """One enclave: its own host handle table, fd table, cwd and policy."""

    def __init__(self, policy: Access | None = None, backend: str = DEFAULT_BACKEND, **options: Any) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if policy is None:
            # The command line's default policy, never allow-all: that is asked for by name (ALLOW_ALL, -A).
            from .policy.builder import build_default

            policy = build_default(None, None)
        self.policy = policy
        self.backend_name = backend
        self.options = options
        self.state = "created"
        self._backend: Backend | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> Enclave:
        if self.state == "finalized":
            raise EnclaveStateError("this enclave has been finalized; create a new one")
        if self.state == "created":
            self._backend = make_backend(self.backend_name, self.policy, self.options)
            self.state = "running"
        return self

    def close(self) -> None:
        if self.state == "running" and self._backend is not None:
            try:
                self._backend.close()
            finally:
                self._backend = None
        self.state = "finalized"

    def __enter__(self) -> Enclave:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _running(self) -> Backend:
        if self.state == "created":
            self.start()
        if self.state != "running" or self._backend is None:
            raise EnclaveStateError(f"the enclave is {self.state}; no more calls can be made")
        return self._backend

    # -- running code --------------------------------------------------------------------------------------
    def run_path(self, path: str, args: list[str] | None = None) -> int:
        """Run a script as `python path args...` would; returns its exit status."""
        return self._run("path", str(path), list(args or []))

    def run_module(self, module: str, args: list[str] | None = None) -> int:
        """Run `python -m module args...`; returns its exit status."""
        return self._run("module", module, list(args or []))

    def run_code(self, code: str, args: list[str] | None = None) -> int:
        """Run `python -c code args...`; returns its exit status."""
        return self._run("code", code, list(args or []))

    def run_stdin(self, source: str, args: list[str] | None = None) -> int:
        """Run program text read from standard input, as `python - args...` does (argv[0] '-', '<stdin>')."""
        return self._run("stdin", source, list(args or []))

    def call(self, target: str, *args: Any) -> Any:
        """An ecall: import `module` inside the enclave and return `function(*args)` (plain data only)."""
        check_plain(args, f"arguments of {target}")
        backend = self._running()
        _measure(backend, "module", target.split(":", 1)[0])
        return backend.call(target, args)

    def _run(self, kind: str, target: str, args: list[str]) -> int:
        backend = self._running()
        _measure(backend, kind, target)
        return backend.run(kind, target, args)

    def __repr__(self) -> str:
        return f"<Enclave backend={self.backend_name} {self.state}>"
