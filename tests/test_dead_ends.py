"""Fewer dead ends: a program that probes the folders above its files (black, pytest, git-aware tools) runs
under the default policy (docs/policy.md, "Probing the folders above").

black looks for `.git`, `.hg` and `pyproject.toml` in every parent folder of the file it formats.  Under the
default policy those names are not granted: their metadata answers ENOENT (not in the enclave's view, whether or
not the host has them), so the walk moves on; a program that asks for such a file directly is told the one step
(`--learn`), and one learning run gives a policy that grants what it looked at.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import run_shim

from posix_shim import policy

# What black's find_project_root does, without black (not a test dependency): stat three names in every parent.
WALKER = textwrap.dedent('''
    import sys
    from pathlib import Path
    target = Path(sys.argv[1]).resolve()
    for d in [target.parent, *target.parent.parents]:
        if (d / ".git").exists() or (d / ".hg").is_dir() or (d / "pyproject.toml").is_file():
            print("root", d)
            break
    else:
        print("root /")
    target.write_text(target.read_text().replace("x=1", "x = 1"))
    ''')


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with no repository and no pyproject.toml above it (the machine's /tmp has none)."""
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "walk.py").write_text(WALKER)
    (folder / "f.py").write_text("x=1\n")
    for parent in folder.parents:
        assert not (parent / ".git").exists() and not (parent / "pyproject.toml").exists(), parent
    return folder


def test_the_walker_runs_at_once_and_the_probes_are_absent(backend: str, project: Path) -> None:
    """The probes above the project answer ENOENT (access.Absent): the tool runs under the default policy."""
    r = run_shim(["walk.py", "f.py"], backend=backend, cwd=project, options=[f"--allow-write={project / 'f.py'}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "root /\n"
    assert (project / "f.py").read_text() == "x = 1\n"


def test_a_file_above_the_grants_is_not_seen_and_its_denial_names_the_one_step(backend: str, project: Path) -> None:
    """The other side of absence: a real pyproject.toml above the project is not in the enclave's view (the tool
    does not find it), and a program that asks for it directly is told the one step."""
    marker = project.parent / "pyproject.toml"
    marker.write_text("[tool.x]\n")
    r = run_shim(["walk.py", "f.py"], backend=backend, cwd=project, options=[f"--allow-write={project / 'f.py'}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "root /\n"
    asks = run_shim(["-c", f"import os; os.stat({str(marker)!r})"], backend=backend, cwd=project)
    assert asks.returncode == 1
    last = asks.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("enclave_libc.errors.PolicyHidden: "), last
    assert f"stat('{marker}') denied: no read access to {marker} (allow with --allow-read={marker};" in last, last
    assert "run it once with --learn=FILE to record them all, then with --policy=FILE" in last, last
    granted = run_shim(["walk.py", "f.py"], backend=backend, cwd=project,
                       options=[f"--allow-write={project / 'f.py'}", f"--allow-read={marker}"])
    assert granted.stdout.decode() == f"root {project.parent}\n", granted.stderr


def test_one_learning_run_then_the_tool_works_under_the_learned_policy(backend: str, project: Path) -> None:
    learned = project / "learned.toml"
    first = run_shim([f"--learn={learned}", "walk.py", "f.py"], backend=backend, cwd=project)
    assert first.returncode == 0, first.stderr
    (project / "f.py").write_text("x=1\n")
    r = run_shim(["walk.py", "f.py"], backend=backend, cwd=project,
                 options=[f"--policy={learned}", f"--allow-write={project / 'f.py'}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "root /\n"
    assert (project / "f.py").read_text() == "x = 1\n"


def test_only_probes_in_the_folders_above_a_grant_get_the_learn_hint(tmp_path: Path) -> None:
    p = policy.parse(["--allow-read=/posix-shim-a/b/c"], cwd=str(tmp_path))
    above = p.check("stat", "stat", b"/posix-shim-a/.git")
    assert above is not None and "--learn=FILE" in above
    elsewhere = p.check("stat", "stat", b"/posix-shim-nowhere/x/y")
    assert elsewhere is not None and "--learn" not in elsewhere, elsewhere
    assert elsewhere.endswith("(allow with --allow-read=/posix-shim-nowhere/x/y)")
