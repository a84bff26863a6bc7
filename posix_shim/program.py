"""Running a program the way `python` runs it, from inside an enclave.

Shared by every backend: the sim runner calls it in-process, the process backend's child calls it after it has
installed interposition.  `sys.argv`, `sys.path[0]` and `__main__` are set as CPython sets them for
`python SCRIPT`, `python -m MODULE` and `python -c CODE`; the exit status follows CPython too: SystemExit's code,
1 after an uncaught exception (its traceback printed to stderr without the runner's own frames), 130 after an
uncaught KeyboardInterrupt.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
import types
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_RUNPY = os.path.abspath(runpy.__file__) if getattr(runpy, "__file__", None) else "<frozen runpy>"


def _is_runner_frame(filename: str) -> bool:
    return filename.startswith(_HERE) or filename in (_RUNPY, "<frozen runpy>")


def print_exception(exc: BaseException) -> None:
    """The traceback CPython prints for an uncaught exception, minus the runner's frames."""
    tb = exc.__traceback__
    while tb is not None and _is_runner_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    try:
        sys.stderr.flush() if sys.stderr else None
        traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
        sys.stderr.flush()
    except Exception:  # stderr itself is broken: nothing better to do than the real fd 2
        os.write(2, "".join(traceback.format_exception(type(exc), exc, tb)).encode(errors="replace"))


def exit_status(code: Any) -> int:
    """What a process exiting with SystemExit(code) reports."""
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def run(kind: str, target: str, args: list[str]) -> int:
    """Run `python SCRIPT args`, `python -m MODULE args` or `python -c CODE args`; return the exit status."""
    saved_argv, saved_path0 = sys.argv, sys.path[0] if sys.path else None
    try:
        try:
            if kind == "path":
                sys.argv = [target, *args]
                sys.path[0] = os.path.dirname(os.path.abspath(target))
                runpy.run_path(os.path.abspath(target), run_name="__main__")
            elif kind == "module":
                sys.argv = [target, *args]  # runpy replaces argv[0] with the module's file, as `-m` does
                sys.path[0] = os.getcwd()
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            elif kind == "code":
                sys.argv = ["-c", *args]
                sys.path[0] = ""
                main = types.ModuleType("__main__")
                main.__builtins__ = __builtins__
                saved_main = sys.modules.get("__main__")
                sys.modules["__main__"] = main
                try:
                    exec(compile(target, "<string>", "exec"), main.__dict__)  # noqa: S102 - the user's own -c
                finally:
                    if saved_main is not None:
                        sys.modules["__main__"] = saved_main
            else:
                raise ValueError(f"unknown program kind {kind!r}")
        except SystemExit as exc:
            return exit_status(exc.code)
        except KeyboardInterrupt as exc:
            print_exception(exc)
            return 130
        except BaseException as exc:  # noqa: BLE001 - exactly what the interpreter does with it
            print_exception(exc)
            return 1
        return 0
    finally:
        _flush_std()
        sys.argv = saved_argv
        if saved_path0 is not None:
            sys.path[0] = saved_path0


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
