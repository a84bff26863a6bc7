"""Shared fixtures: run the real command line, on every backend this build has."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The project's own plugin, for its `enclave` fixture (docs/pytest.md); named like its pytest11 entry point, so an
# installed copy is not loaded twice.
pytest_plugins = ["posix_shim.pytest_plugin"]

# Backends are discovered, not listed: once posix_shim/process_backend.py exists, every backend-parametrized test
# runs on it too.
BACKENDS = ["sim"] + (["process"] if importlib.util.find_spec("posix_shim.process_backend") else [])


def run_shim(args: list[str], backend: str = "sim", cwd: os.PathLike | str | None = None, input: bytes | None = None,
             env: dict[str, str] | None = None, timeout: float = 60, options: list[str] | None = None
             ) -> subprocess.CompletedProcess:
    """`python -m posix_shim --backend B [options] args...`, as a user would type it."""
    cmd = [sys.executable, "-m", "posix_shim", "--backend", backend, *(options or []), *args]
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return subprocess.run(cmd, cwd=cwd, input=input, capture_output=True, env=full_env, timeout=timeout)


def program(name: str) -> str:
    """A test program's text, kept as a real file under tests/programs/ (linted like the rest) rather than a string."""
    return (REPO / "tests" / "programs" / name).read_text()


def printed_in_sim(access: object, code: str, capfd: pytest.CaptureFixture[str]) -> str:
    """Run `code` in a sim enclave under the policy `access`; it must exit 0.  Returns what it printed (only what
    the run printed: captured output from before it is dropped)."""
    from posix_shim import Enclave

    with Enclave(policy=access, backend="sim") as enclave:
        capfd.readouterr()
        status = enclave.run_code(code)
        out, err = capfd.readouterr()
    assert status == 0, err
    return out


def run_native(args: list[str], cwd: os.PathLike | str | None = None, input: bytes | None = None,
               env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, *args], cwd=cwd, input=input, capture_output=True, env=full_env,
                          timeout=timeout)


@pytest.fixture(autouse=True, scope="session")
def _own_platform_secret(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One simulated platform per test session, never the user's (~/.local/state/posix_shim/platform-secret).

    Two runs of the suite at once (or a user's own sealed data) would otherwise share the secret the sealing and
    encrypted-folder keys come from.  Children inherit it through the environment; tests that want a platform
    of their own still set POSIX_SHIM_PLATFORM_SECRET themselves.
    """
    if "POSIX_SHIM_PLATFORM_SECRET" not in os.environ:
        os.environ["POSIX_SHIM_PLATFORM_SECRET"] = str(tmp_path_factory.mktemp("platform") / "secret")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


# -- boundary figures ------------------------------------------------------------------------------------------
# Tests of the boundary (test_lies.py, test_faults.py) add what they proved to this dict; the session ends with a
# short block of those figures, so a run reports them from its own tests rather than from a document.
FIGURES: dict[str, int] = {}


@pytest.fixture(scope="session")
def figures() -> dict[str, int]:
    """Add to it with `figures[name] = figures.get(name, 0) + n`."""
    return FIGURES


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist the tests run in workers: each sends its figures back with its other output."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["posix_shim_figures"] = dict(FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """The controller adds up what each worker counted, so the summary reports what ran in all of them."""
    for name, n in (getattr(node, "workeroutput", None) or {}).get("posix_shim_figures", {}).items():
        FIGURES[name] = FIGURES.get(name, 0) + n


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("posix_shim boundary figures")
    for name in sorted(FIGURES):
        terminalreporter.write_line(f"{name:<48} {FIGURES[name]:>12,}")


# -- the mutation run ---------------------------------------------------------------------------------------------
# tests/test_mutation.py runs one pytest per mutant: only when asked for (`-m mutation`, POSIX_SHIM_MUTATION=1).


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mutation: the mutation run of tests/mutation.py (asked for with -m mutation)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "mutation" in (config.getoption("markexpr") or "") or os.environ.get("POSIX_SHIM_MUTATION") == "1":
        return
    skip = pytest.mark.skip(reason="the mutation run: ask for it with -m mutation or POSIX_SHIM_MUTATION=1")
    for item in items:
        if "mutation" in item.keywords:
            item.add_marker(skip)
