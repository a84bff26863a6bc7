"""What a new user reads and types: --help, the getting-started page, the command line reference.

Each test here guards one rough edge found by using the tool as a newcomer would; it fails if that edge comes
back (a page promising more than a flag does, a typo that silently runs the wrong program, a usage line that
hides a form).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import run_shim

from posix_shim import cli, policy

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def flat(text: str) -> str:
    """Markdown or help text as words: no backticks, no line wrapping."""
    return re.sub(r"\s+", " ", text.replace("`", "")).strip()


# -- -A says exactly what it allows, from one source ---------------------------------------------------------------


@pytest.mark.parametrize("page", ["cli.md", "getting-started.md", "policy.md"])
def test_docs_quote_the_one_meaning_of_allow_all(page: str) -> None:
    text = flat((DOCS / page).read_text())
    assert flat(policy.ALLOW_ALL_MEANING) in text, f"docs/{page} must say what -A does with policy.ALLOW_ALL_MEANING"


def test_help_quotes_the_one_meaning_of_allow_all() -> None:
    assert flat(policy.ALLOW_ALL_MEANING) in flat(cli.build_parser().format_help())


def test_no_page_promises_that_allow_all_allows_everything() -> None:
    for page in [*DOCS.glob("*.md"), REPO / "README.md"]:
        text = flat(page.read_text()).lower()
        for claim in ("no confinement at all", "allow every call and resource"):
            assert claim not in text, f"{page.name} says {claim!r}, but -A still refuses ctypes and subprocess"


def test_allow_all_really_refuses_ffi_and_run_and_honours_denials(tmp_path: Path) -> None:
    """The sentence is true: -A reads anywhere, but ctypes and subprocess stay refused and --deny-* applies."""
    (tmp_path / "hidden.txt").write_text("x")
    code = ("import ctypes, subprocess\n"
            "print(len(open('/etc/passwd').read()) > 0)\n"
            "for f in (lambda: ctypes.CDLL(None).getpid(), lambda: subprocess.run(['true']),\n"
            "          lambda: open('hidden.txt')):\n"
            "    try:\n"
            "        f()\n"
            "        print('allowed')\n"
            "    except OSError as e:\n"
            "        print(e.errno)\n")
    done = run_shim(["-A", "--deny-read=hidden.txt", "-c", code], cwd=tmp_path)
    assert done.stdout.decode().split() == ["True", "38", "38", "13"], done.stderr.decode()
    allowed = run_shim(["-A", "--allow-ffi", "--allow-run", "-c", code], cwd=tmp_path)
    assert allowed.stdout.decode().split() == ["True", "allowed", "allowed", "allowed"], allowed.stderr.decode()


# -- a flag's value given with a space instead of '=' ----------------------------------------------------------


def test_a_bare_flag_before_a_non_python_program_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("print('data.txt ran as a program')\n")
    (tmp_path / "app.py").write_text("print('app ran')\n")
    done = run_shim(["--allow-read", "data.txt", "app.py"], cwd=tmp_path)
    err = done.stderr.decode()
    assert done.returncode == 2 and b"ran as a program" not in done.stdout
    assert "--allow-read takes a value only after '=' (--allow-read=data.txt)" in err, err
    assert "Write --allow-read=data.txt, or put '--' before the program" in err, err


def test_the_forms_that_mean_what_they_say_still_run(tmp_path: Path) -> None:
    """The negative control: '=' form, a bare flag before a Python program, and '--' are accepted."""
    (tmp_path / "data.txt").write_text("print('data.txt ran as a program')\n")
    (tmp_path / "app.py").write_text("print(open('data.txt').read().strip()[:5])\n")
    assert run_shim(["--allow-read=data.txt", "app.py"], cwd=tmp_path).stdout == b"print\n"
    assert run_shim(["--allow-read", "app.py"], cwd=tmp_path).stdout == b"print\n"
    explicit = run_shim(["--allow-read", "--", "data.txt"], cwd=tmp_path)
    assert explicit.stdout == b"data.txt ran as a program\n", explicit.stderr


@pytest.mark.parametrize("argv, refused", [
    (["--allow-read", "/etc/hostname", "app.py"], True),
    (["--deny-write", "out", "app.py"], True),
    (["--trace", "trace.txt", "app.py"], True),
    (["--allow-net", "-m", "http.server"], False),
    (["--allow-read", "app.py"], False),
    (["--allow-read", "-"], False),
    (["--allow-read=/etc/hostname", "app.py"], False),
    (["--policy", "p.toml", "app.py"], False),  # a flag that always takes a value
])
def test_which_bare_flags_are_refused(argv: list[str], refused: bool, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    parser = cli.build_parser()
    if refused:
        with pytest.raises(SystemExit) as exit_info:
            cli.split_argv(argv, parser)
        assert exit_info.value.code == 2
    else:
        cli.split_argv(argv, parser)


def test_python_programs_without_a_py_suffix_are_recognised(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/usr/bin/env python3\nprint('hi')\n")
    folder = tmp_path / "pkgdir"
    folder.mkdir()
    (folder / "__main__.py").write_text("")
    assert cli.looks_like_python(str(script)) and cli.looks_like_python(str(folder))
    assert not cli.looks_like_python("/etc/hostname") and not cli.looks_like_python(str(tmp_path))


# -- --help shows every form ---------------------------------------------------------------------------------


def test_help_usage_shows_stdin_and_the_optional_policy_file() -> None:
    text = cli.build_parser().format_help()
    assert text.startswith(f"usage: {cli.USAGE}\n")
    assert "| -)" in cli.USAGE and "'policy check [FILE]'" in text
    assert "policy check FILE'" not in text


def test_cli_reference_opens_with_the_same_usage() -> None:
    first = (DOCS / "cli.md").read_text().split("```\n", 2)[1].splitlines()
    assert first[0] == cli.USAGE
    assert first[1].startswith("posix-shim policy check [FILE]")


def test_help_on_the_command_line(tmp_path: Path) -> None:
    done = run_shim(["--help"], cwd=tmp_path)
    out = done.stdout.decode()
    assert done.returncode == 0 and f"usage: {cli.USAGE}" in out and "policy check [FILE]" in out


# -- getting-started says what separation the process backend gives ------------------------------------------


def test_getting_started_does_not_overclaim_the_process_backend() -> None:
    text = (DOCS / "getting-started.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `process`"))
    assert "a separate OS process" in row and "(threat-model.md)" in row and "what is and is not confined" in row
    for claim in ("real separation", "cannot touch the host"):
        assert claim not in flat(text), claim


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("posix_shim runs on Linux")


# -- the README's test command is the one CI runs ------------------------------------------------------------------


def test_ci_runs_the_readme_test_command() -> None:
    """A newcomer who types the README's second command runs exactly what CI runs, flags included (-n auto)."""
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^python3 -m venv \.venv && .*$", readme, re.M)
    assert len(commands) == 2, "the README's first screen has exactly two set-up commands"
    pytest_args = commands[1].split(".venv/bin/python -m pytest", 1)[1].strip()
    ci = (REPO / ".ci" / "run").read_text()
    assert f'"$py" -m pytest {pytest_args} ||' in ci, f".ci/run must run `pytest {pytest_args}` as the README says"
