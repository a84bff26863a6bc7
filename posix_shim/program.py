"""Running a program the way `python` runs it, from inside an enclave.

Shared by every backend: the sim runner calls it in-process, the process backend's child calls it after it has
installed interposition.  `sys.argv`, `sys.path[0]` and `__main__` are set as CPython sets them for
`python SCRIPT`, `python -m MODULE` and `python -c CODE`; the exit status follows CPython too: SystemExit's code,
1 after an uncaught exception (its traceback printed to stderr without the runner's own frames), 130 after an
uncaught KeyboardInterrupt.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import os
import runpy
import sys
import threading
import traceback
import types
from collections.abc import Iterator
from pkgutil import get_importer
from typing import Any

import enclave_libc
import ocall_bridge


def _package_dir(package: types.ModuleType) -> str:
    assert package.__file__ is not None  # for mypy: the three are regular packages, imported from files
    return os.path.dirname(os.path.abspath(package.__file__)) + os.sep


# Frames of the runtime itself (runner, trusted libc, boundary): to the program they are what C code is to a
# native run - invisible - so tracebacks leave them out wherever they appear.
_INTERNAL = tuple(_package_dir(m) for m in (sys.modules[__package__], enclave_libc, ocall_bridge))


def _is_internal(filename: str) -> bool:
    return filename.startswith(_INTERNAL)


def _strip(exc: BaseException | None, seen: set[int]) -> None:
    """Unlink internal frames from the tracebacks of `exc`, its cause, context and group members."""
    if exc is None or id(exc) in seen:
        return
    seen.add(id(exc))
    kept = []
    tb = exc.__traceback__
    while tb is not None:
        if not _is_internal(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    for earlier, later in zip(kept, kept[1:], strict=False):
        earlier.tb_next = later
    if kept:
        kept[-1].tb_next = None
    exc.__traceback__ = kept[0] if kept else None
    for nested in (exc.__cause__, exc.__context__, *(getattr(exc, "exceptions", None) or ())):
        _strip(nested, seen)


# -- showing exceptions -----------------------------------------------------------------------------------
# The interpreter's C display (sys.__excepthook__, the thread and unraisable hooks) reads each frame's source
# line by opening the file through `io.open` and then handing `fileno()` to C code (encoding detection,
# lseek): with an enclave fd that is some *host* descriptor - another file in the sim backend, the host channel
# in the process backend.  So while a program runs, those hooks are Python stand-ins built on the traceback
# module (its source lines come through linecache, i.e. enclave reads), with the C display's exact text.


def _syntax_error_lines(self: traceback.TracebackException, stype: str) -> Iterator[str]:
    """A SyntaxError as the 3.11 C display words it (traceback.py draws the carets differently)."""
    yield f'  File "{self.filename if self.filename is not None else "<string>"}", line {self.lineno}\n'
    text = self.text
    if text is not None:
        offset = self.offset if self.offset is not None else -1
        if self.exc_type is SyntaxError:
            end_lineno = self.end_lineno if self.end_lineno is not None else self.lineno
            end_offset = self.end_offset if self.end_offset is not None else -1
        else:  # subclasses (IndentationError, TabError): one caret
            end_lineno, end_offset = self.lineno, -1
        raw = text.encode("utf-8", "surrogatepass").split(b"\0", 1)[0]  # the C string
        if end_lineno is not None and self.lineno is not None and end_lineno > self.lineno:
            end_offset = len(raw)
        end_offset = min(end_offset, len(raw) + 1)
        yield from _error_text(offset, end_offset, raw)
    msg = "" if self.msg is None else str(self.msg)
    yield f"{stype}: {msg}\n" if msg else f"{stype}\n"


def _error_text(offset: int, end_offset: int, text: bytes) -> Iterator[str]:
    """pythonrun.c's print_error_text, on the UTF-8 bytes as C sees them."""
    carets = end_offset - offset if end_offset > 0 and end_offset > offset else 1
    offset -= 1
    stripped = text.lstrip(b" \t\f")
    offset -= len(text) - len(stripped)
    text = stripped
    length = len(text) - 1 if text.endswith(b"\n") else len(text)
    offset = min(offset, length)
    while True:
        nl = text.find(b"\n")
        if nl < 0 or nl >= offset:
            break
        text, length, offset = text[nl + 1:], length - (nl + 1), offset - (nl + 1)
    shown = text.decode("utf-8", "replace")
    yield "    " + shown + ("" if text[length:length + 1] == b"\n" else "\n")
    if offset >= 0:
        yield "    " + " " * offset + "^" * carets + "\n"


def _c_like(te: traceback.TracebackException, seen: set[int]) -> traceback.TracebackException:
    if id(te) not in seen:
        seen.add(id(te))
        if te.exc_type is not None and issubclass(te.exc_type, SyntaxError):
            # A private method of TracebackException (not in typeshed), replaced on this one instance.
            te._format_syntax_error = types.MethodType(_syntax_error_lines, te)  # type: ignore[attr-defined]
        for nested in (te.__cause__, te.__context__, *(getattr(te, "exceptions", None) or ())):
            if nested is not None:
                _c_like(nested, seen)
    return te


def format_exception(exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> str:
    """What the interpreter prints for an uncaught exception."""
    if not isinstance(exc, BaseException):
        return f"TypeError: print_exception(): Exception expected for value, {type(exc).__name__} found\n"
    if sys.version_info >= (3, 13):
        # 3.13's C display itself hands the exception to traceback._print_exception_bltin: traceback.py's text
        # (its SyntaxError carets too), sys.tracebacklimit read its way, in colour when the program's stderr is a
        # terminal and the environment allows it - both asked inside the enclave, as the program would see them.
        import _colorize  # type: ignore[import-not-found]  # new in 3.13

        te = traceback.TracebackException(type(exc), exc, tb, compact=True,
                                          limit=traceback.BUILTIN_EXCEPTION_LIMIT)  # type: ignore[attr-defined]
        return "".join(te.format(colorize=_colorize.can_colorize()))  # type: ignore[call-arg]
    te = traceback.TracebackException(type(exc), exc, tb, compact=True)
    return "".join(_c_like(te, set()).format())


def _write_stderr(text: str) -> None:
    stderr = sys.stderr
    if stderr is None:
        return
    try:
        stderr.flush()
        stderr.write(text)
        stderr.flush()
    except Exception:  # stderr itself is broken: nothing better to do than enclave fd 2
        try:
            os.write(2, text.encode(errors="replace"))
        except OSError:
            pass


def display(exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
    """sys.excepthook's default, in Python (see above)."""
    _write_stderr(format_exception(exc_type, exc, tb))


def thread_excepthook(args: Any, /) -> None:
    """threading.excepthook's default, in Python: "Exception in thread NAME:" and the traceback."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else threading.get_ident()
    _write_stderr(f"Exception in thread {name}:\n" + format_exception(args.exc_type, args.exc_value,
                                                                     args.exc_traceback))


def unraisablehook(unraisable: Any, /) -> None:
    """sys.unraisablehook's default, in Python: "Exception ignored in: OBJ" and the traceback."""
    lines = []
    obj, msg = unraisable.object, unraisable.err_msg
    if obj is not None:
        try:
            shown = repr(obj)
        except Exception:
            shown = "<object repr() failed>"
        lines.append(f"{msg if msg is not None else 'Exception ignored in'}: {shown}\n")
    elif msg is not None:
        lines.append(f"{msg}:\n")
    if unraisable.exc_traceback is not None:
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_tb(unraisable.exc_traceback))
    if unraisable.exc_type is not None:
        lines.extend(traceback.format_exception_only(unraisable.exc_type, unraisable.exc_value))
    _write_stderr("".join(lines))


class _Hooks:
    """The Python stand-ins installed for a run (where the program finds the interpreter's defaults)."""

    def __enter__(self) -> _Hooks:
        self.saved = (sys.excepthook, sys.__excepthook__, sys.unraisablehook, sys.__unraisablehook__,
                      threading.excepthook, threading.__excepthook__)
        if sys.excepthook is sys.__excepthook__:
            sys.excepthook = display
        if sys.unraisablehook is sys.__unraisablehook__:
            sys.unraisablehook = unraisablehook
        if threading.excepthook is threading.__excepthook__:
            threading.excepthook = thread_excepthook
        sys.__excepthook__, sys.__unraisablehook__ = display, unraisablehook
        threading.__excepthook__ = thread_excepthook
        return self

    def __exit__(self, *exc: object) -> None:
        (sys.excepthook, sys.__excepthook__, sys.unraisablehook, sys.__unraisablehook__,
         threading.excepthook, threading.__excepthook__) = self.saved


def print_exception(exc: BaseException) -> None:
    """Report an uncaught exception as the interpreter does: through sys.excepthook, as the program left it
    (its default being `display`), with the runtime's own frames taken out of the traceback."""
    _strip(exc, set())
    hook = sys.excepthook
    try:
        hook(type(exc), exc, exc.__traceback__)
    except Exception as error:  # the interpreter's words for a failing hook
        _write_stderr("Error in sys.excepthook:\n" + format_exception(type(error), error, error.__traceback__)
                      + "\nOriginal exception was:\n" + format_exception(type(exc), exc, exc.__traceback__))


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


def _main_module() -> types.ModuleType:
    """A fresh __main__ with the globals the interpreter gives it (pylifecycle.c, add_main_module)."""
    main = types.ModuleType("__main__")
    main.__loader__ = importlib.machinery.BuiltinImporter
    main.__annotations__ = {}
    main.__dict__["__builtins__"] = builtins  # a module global, as pylifecycle.c sets it (ModuleType declares none)
    return main


def _absolute(path: str) -> str:
    # CPython makes the script name absolute by joining it to the cwd, without normalizing ('./a.py' stays
    # '/cwd/./a.py'): __file__, tracebacks and error messages show exactly that.
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def _run_script(target: str) -> None:
    filename = _absolute(target)
    if get_importer(target) is not None:
        # A directory or zip file: python puts it first on sys.path and runs its __main__ module like -m.
        sys.path[0] = filename
        # runpy's private entry point of `python -m` (no stub), the one the interpreter itself calls
        _at_native_depth("module", runpy._run_module_as_main, "__main__", False)  # type: ignore[attr-defined]
        return
    # sys.path[0] is the directory of the script with symlinks resolved, as CPython computes it.
    sys.path[0] = os.path.dirname(os.path.realpath(filename))
    main = sys.modules["__main__"]
    main.__file__ = filename
    main.__dict__["__cached__"] = None  # a module global the import system sets (ModuleType declares none)
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", filename)
    with open(filename, "rb") as f:  # inside the enclave: the read is an ocall like any other
        source = f.read()
    # dont_inherit: the program must not get this module's `from __future__ import annotations`.
    _at_native_depth("script", exec, compile(source, filename, "exec", dont_inherit=True), main.__dict__)


# How much of the recursion limit the interpreter itself uses below a program's first frame, natively (CPython
# 3.11: nothing for -c or a script, the C call into runpy for -m; 3.12 and 3.13, where the limit counts Python
# frames only: one for each, measured).  Checked by tests/test_api.py, which compares a runaway recursion's
# traceback with the native one.
_NATIVE_BASE = {"code": 0, "script": 0, "module": 1} if sys.version_info < (3, 12) else \
    {"code": 1, "script": 1, "module": 1}
_PROBE_MAX = 20_000


def _headroom() -> int:
    """How many more Python frames fit on the stack above the caller's frame (measured, ~1000 tiny calls)."""

    def down(n: int) -> int:
        try:
            return down(n + 1)
        except RecursionError:
            return n

    return down(1) - 1  # down's own first frame sits above the caller too


def _at_native_depth(where: str, fn: Any, *args: Any) -> Any:
    """Call fn(*args) - exec of the program, or runpy's -m entry - with as much stack left as natively.

    Natively the program's first frame is the bottom of the stack; here the CLI's and the runner's frames lie
    below it.  The recursion limit is raised by what they use (measured, not guessed) while the program runs,
    and sys.getrecursionlimit/setrecursionlimit show and take the program's own view, so a deep recursion
    fails at the same depth, with the same "repeated N more times", as natively.
    """
    real_get, real_set = sys.getrecursionlimit, sys.setrecursionlimit
    limit = real_get()
    if limit > _PROBE_MAX:  # a host that raised the limit this far needs no exactness, and the probe would be slow
        return fn(*args)
    extra = max(0, limit - _NATIVE_BASE[where] - _headroom() - 1)

    def getrecursionlimit() -> int:
        return real_get() - extra

    def setrecursionlimit(new: int) -> None:
        real_set(new)  # the native checks and errors for the program's value, then room for the runner
        real_set(new + extra)

    getrecursionlimit.__doc__, setrecursionlimit.__doc__ = real_get.__doc__, real_set.__doc__
    real_set(limit + extra)
    sys.getrecursionlimit, sys.setrecursionlimit = getrecursionlimit, setrecursionlimit
    try:
        return fn(*args)
    finally:
        sys.getrecursionlimit, sys.setrecursionlimit = real_get, real_set
        real_set(max(real_get() - extra, 1))  # the program's own setting, if it made one, survives


def _remember_command(source: str) -> None:
    """3.13 keeps the text of `-c` (with the newline the interpreter appends) where tracebacks find it, so they
    show its lines as they show a script's; 3.11 and 3.12 show none."""
    if sys.version_info >= (3, 13):
        import linecache

        text = source + "\n"
        linecache.cache["<string>"] = (len(text), None, [line + "\n" for line in text.splitlines()], "<string>")


def _wait_for_threads() -> None:
    """What the interpreter does before it exits: wait for every non-daemon thread the program started."""
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon and thread.is_alive():
            thread.join()


def run(kind: str, target: str, args: list[str]) -> int:
    """Run `python SCRIPT args`, `python -m MODULE args`, `python -c CODE args` or `python - args` (kind
    "stdin", target the program's text); return the exit status."""
    if kind not in ("path", "module", "code", "stdin"):
        raise ValueError(f"unknown program kind {kind!r}")
    saved_argv, saved_path0 = sys.argv, sys.path[0] if sys.path else None
    saved_main = sys.modules.get("__main__")
    if not sys.path:
        sys.path.append("")
    sys.modules["__main__"] = _main_module()
    hooks = _Hooks().__enter__()
    try:
        status = 0
        try:
            try:
                if kind == "path":
                    sys.argv = [target, *args]
                    _run_script(target)
                elif kind == "module":
                    sys.argv = [target, *args]  # runpy replaces argv[0] with the module's file, as `-m` does
                    sys.path[0] = os.getcwd()
                    # runpy's private entry point of `python -m` (no stub), the one the interpreter itself calls
                    _at_native_depth("module", runpy._run_module_as_main, target, True)  # type: ignore[attr-defined]
                elif kind == "code":
                    sys.argv = ["-c", *args]
                    sys.path[0] = ""
                    _remember_command(target)
                    code = compile(target, "<string>", "exec", dont_inherit=True)
                    _at_native_depth("code", exec, code, sys.modules["__main__"].__dict__)
                else:  # `python - ARGS`: the program's text came from standard input
                    sys.argv = ["-", *args]
                    sys.path[0] = ""
                    main = sys.modules["__main__"]
                    main.__file__ = "<stdin>"
                    main.__dict__["__cached__"] = None
                    code = compile(target, "<stdin>", "exec", dont_inherit=True)
                    _at_native_depth("code", exec, code, main.__dict__)
            finally:
                _flush_std()  # before other threads go on printing, as the interpreter flushes at exit
        except SystemExit as exc:
            status = exit_status(exc.code)
        except KeyboardInterrupt as exc:
            print_exception(exc)
            status = 130
        except BaseException as exc:  # exactly what the interpreter does with it
            print_exception(exc)
            status = 1
        try:
            _wait_for_threads()
        except KeyboardInterrupt:
            pass
        return status
    finally:
        _flush_std()
        hooks.__exit__()
        sys.argv = saved_argv
        if saved_path0 is not None:
            sys.path[0] = saved_path0
        if saved_main is not None:
            sys.modules["__main__"] = saved_main


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
