"""What an installed copy promises: one version everywhere, type hints shipped, the license present."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO

import posix_shim


def test_the_version_is_written_once_and_read_everywhere() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    out = subprocess.run([sys.executable, "-m", "posix_shim", "--version"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0 and out.stdout == f"posix_shim {posix_shim.__version__}\n"
    try:
        installed = importlib.metadata.version("posix_shim")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("posix_shim is not installed (pip install -e .) in this interpreter")
    assert installed == posix_shim.__version__


@pytest.mark.parametrize("package", ["posix_shim", "enclave_libc", "ocall_bridge"])
def test_packages_ship_their_type_hints(package: str) -> None:
    assert (REPO / package / "py.typed").exists()
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data[package]


def test_license_and_changelog() -> None:
    assert "Apache License" in (REPO / "LICENSE").read_text()[:200]
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{posix_shim.__version__}]" in changelog
