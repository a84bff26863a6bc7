"""The pytest plugin: test your own code under the enclave's rules (docs/pytest.md).

    pytest --enclave            # each test body inside a sim enclave
    pytest --enclave=process    # the whole session inside one process enclave

Registered through the `pytest11` entry point, so installing posix_shim is enough; without `--enclave` it only
adds the `enclave` marker and fixture and changes nothing else.

Why two shapes.  A test body is a closure over fixtures (tmp_path, capsys, monkeypatch, objects of the
project), and none of that is plain data, so it cannot be sent as an ecall to another process.

* **sim**: the enclave lives in the pytest process, so each test's call phase runs inside a fresh sim enclave
  (`session.inside`: interposition installed; the standard streams are given back to pytest's capture), with
  that test's policy.  Collection, fixtures and reporting stay outside, exactly as without the plugin: assertion
  rewriting, tracebacks, capsys and monkeypatch are pytest's own.
* **process**: the pytest process re-runs itself *inside* one process enclave (this package's `__main__` is the
  host; the child runs `pytest` with the same arguments plus `--enclave-inner=SPEC`).  Collection, fixtures and
  tests all run in the child; per-test marks are applied by switching the child's policy for each test, inside
  a bound the host enforces (the session policy plus every mark's grants).  If the marks found at collection
  need grants the host was not started with, the child says so and the session restarts once with them.

Policies are computed once, here in the outer pytest process, with `policy.parse` and sent as plain data
(`Policy.to_data` / `policy.from_data`), so the host and the child judge with the same rules.

This module holds only what pytest looks up on the plugin (options, the session state, the fixture); the modes
are `sessions` (none, sim) and `process_session` (process), what a mark asks for is `marks`, and what a test did
at the boundary (denials, its trace, the traceback without the runtime's frames) is `record`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from ..enclave import BACKENDS, Enclave
from .process_session import RESTART_STATUS, InnerProcess, OuterProcess
from .sessions import PlainSession, SimSession

# ---------------------------------------------------------------------------------------------------------------
# Options and configuration
# ---------------------------------------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("posix_shim", "run tests inside a posix_shim enclave (docs/pytest.md)")
    group.addoption("--enclave", nargs="?", const="sim", default=None, choices=BACKENDS, metavar="BACKEND",
                    help="run every test inside an enclave: sim (default: each test body in a sim enclave) or "
                         "process (the whole session inside one process enclave)")
    group.addoption("--enclave-policy", metavar="FILE", default=None,
                    help="the policy for the tests (default: [tool.posix_shim] of the nearest pyproject.toml)")
    group.addoption("--enclave-trace", metavar="DIR", default=None,
                    help="write the ocall trace of each failing test to DIR/<test id>.trace")
    group.addoption("--enclave-inner", metavar="SPEC", default=None, help=argparse.SUPPRESS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "enclave(allow_read=[...], allow_write=[...], allow_net=[...], allow_env=[...], deny_read=[...], "
                   "..., allow_ffi=False, allow_run=False, backend=None): this test's policy on top of the "
                   "session's, and the backend it needs (posix_shim --enclave)")
    inner = config.getoption("enclave_inner")
    state: PlainSession
    if inner:
        state = InnerProcess(config, inner)
    elif config.getoption("enclave") == "sim":
        state = SimSession(config)
    else:
        state = PlainSession(config)
    config.stash[_STATE] = state
    config.pluginmanager.register(state, "posix_shim-enclave-session")


_STATE = pytest.StashKey["PlainSession"]()


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """--enclave=process: run this very session again inside a process enclave, and report its status."""
    if config.getoption("enclave") != "process" or config.getoption("enclave_inner"):
        return None
    if any(config.getoption(name, False) for name in ("help", "version")):
        return None
    return OuterProcess(config).run()


# ---------------------------------------------------------------------------------------------------------------
# The fixture
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def enclave(request: pytest.FixtureRequest) -> Iterator[Enclave]:
    """A started `posix_shim.Enclave` with this test's policy (the session's, plus its @pytest.mark.enclave
    grants) and backend (the mark's, else --enclave's, else sim): `enclave.run_path(...)`, `enclave.call(...)`.
    Closed after the test."""
    state = request.config.stash.get(_STATE, None) or PlainSession(request.config)
    with state.fixture_enclave(request.node) as started:
        yield started


__all__ = ["RESTART_STATUS", "enclave", "pytest_addoption", "pytest_cmdline_main", "pytest_configure"]
