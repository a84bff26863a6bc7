"""Fewer dead ends: a program that probes the folders above its files (black, git-aware tools) is told the one
step that gets it running (docs/policy.md, "Probing the folders above").

black looks for `.git`, `.hg` and `pyproject.toml` in every parent folder of the file it formats.  Under the
default policy those names are not granted, and each hint would fix one path; the denial therefore names
`--learn`, and one learning run gives a policy under which the next run works.
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


def test_the_first_denial_names_the_one_step(backend: str, project: Path) -> None:
    r = run_shim(["walk.py", "f.py"], backend=backend, cwd=project, options=[f"--allow-write={project / 'f.py'}"])
    assert r.returncode == 1
    last = r.stderr.decode().strip().splitlines()[-1]
    probe = project.parent / ".git"
    assert f"stat('{probe}') denied: no read access to {probe} (allow with --allow-read={probe};" in last, last
    assert "run it once with --learn=FILE to record them all, then with --policy=FILE" in last, last
    assert (project / "f.py").read_text() == "x=1\n"


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
