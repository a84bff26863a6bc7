"""The session states without a second process: no --enclave (only the fixture uses policies) and --enclave=sim
(each test's call phase inside a fresh sim enclave with that test's policy).
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

import pytest

from ..enclave import Enclave
from ..policy.flags import parse
from ..policy.model import Policy, PolicyError
from .marks import mark_settings, policy_file, skip_other_backend
from .record import INTERNAL_DIRS, RECORD, Record, hide_runtime_frames, watch

if TYPE_CHECKING:
    from pluggy import Result


class PlainSession:
    """Without --enclave: only the `enclave` fixture uses the policies."""

    backend: str | None = None

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._base: list[str] | None = None
        self._cache: dict[tuple[str, ...], Policy] = {}

    def harness_flags(self) -> list[str]:
        """What pytest itself needs inside: the project (tests, conftest, sources), this runtime's own packages
        (an editable install is not on sys.path, so the defaults do not cover it, and the plugin is imported
        inside) and its temporary folders."""
        flags = [f"--allow-read={self.config.rootpath}", *(f"--allow-read={d}" for d in INTERNAL_DIRS)]
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            base = factory.getbasetemp()
            flags += [f"--allow-read={base}", f"--allow-write={base}"]
        return flags

    def base_flags(self) -> list[str]:
        if self._base is None:
            file = policy_file(self.config)
            self._base = ([f"--policy={file}"] if file else []) + self.harness_flags()
        return self._base

    def policy_for(self, flags: tuple[str, ...]) -> Policy:
        found = self._cache.get(flags)
        if found is None:
            try:
                found = parse([*self.base_flags(), *flags], "module", "pytest",
                                         str(self.config.invocation_params.dir))
            except PolicyError as exc:
                raise pytest.UsageError(f"posix_shim: {exc}") from None
            self._cache[flags] = found
        return found

    def fixture_enclave(self, item: pytest.Item) -> Enclave:
        flags, backend = mark_settings(item)
        return Enclave(policy=self.policy_for(flags), backend=backend or self.backend or "sim")

    def trace_dir(self) -> str | None:
        return self.config.getoption("enclave_trace")

    # Reporting is shared by every mode: a record per test, filled by the modes that run tests inside.
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Generator[None, Result[pytest.TestReport], None]:
        record: Record | None = item.stash.get(RECORD, None)
        if record is not None and call.excinfo is not None and not item.config.getoption("fulltrace"):
            hide_runtime_frames(call.excinfo)
        outcome = yield
        report = outcome.get_result()
        if record is not None and report.failed:
            record.failed = True
            if record.denials:
                report.sections.append(("posix_shim policy", record.denial_text()))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        yield
        self.finish(item)

    def finish(self, item: pytest.Item) -> None:
        """After a test: the trace of a failing one goes to --enclave-trace DIR."""
        record: Record | None = item.stash.get(RECORD, None)
        trace_dir = self.trace_dir()
        if record is not None and record.failed and trace_dir:
            record.write_trace(trace_dir, item.nodeid)


# ---------------------------------------------------------------------------------------------------------------
# --enclave=sim: each test's call phase inside a sim enclave
# ---------------------------------------------------------------------------------------------------------------

class SimSession(PlainSession):
    backend = "sim"

    def pytest_sessionstart(self) -> None:
        self.policy_for(())  # a policy that cannot be used stops the session before any test, as a usage error

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        skip_other_backend(items, "sim")

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        # trylast: innermost, so pytest's own wrappers (capture, logging) switch file descriptors outside the
        # enclave, as they would without it; only the test body runs inside.
        from ..session import inside
        from ..sim_backend import SimBackend

        if "enclave" in getattr(item, "fixturenames", ()):
            # The test drives an enclave of its own (the fixture).  Sim enclaves do not nest (sim.NESTED), so its
            # body is not wrapped.
            yield
            return
        flags, _ = mark_settings(item)
        record = item.stash.setdefault(RECORD, Record())
        backend = SimBackend(self.policy_for(flags))
        undo = watch(backend.rt, record, bool(self.trace_dir()))
        streams = (sys.stdin, sys.stdout, sys.stderr)
        try:
            with inside(backend.rt):
                # The standard streams stay pytest's (its capture: capsys, capfd, -s), as outside; everything else
                # - files, sockets, time, the environment - is the enclave's.  `inside` restores them on the way
                # out as it found them.
                sys.stdin, sys.stdout, sys.stderr = streams
                record.recording = True
                try:
                    yield
                finally:
                    record.recording = False
        finally:
            undo()
            backend.close()

