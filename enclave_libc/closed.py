"""Fail closed: every public callable of the C modules behind the OS is served by a family, or refused.

Issue 13: interposition that patches only what the families serve leaves the rest of `posix`, `resource`,
`termios`, `_posixshmem`, `readline`... reaching the host.  This family is installed *first* (the later families'
entries win on the same original), and its table refuses with ENOSYS, naming `module.name`, every public
callable of MODULES that no family serves and that is not in PURE: computations that touch nothing outside the
process's own memory (`os.strerror`, `os.WEXITSTATUS`, `socket.htons`), or that only read what every process
may read about itself (`resource.getrlimit`, `os.cpu_count`).  Types (exception classes, result structs, the
io buffer classes over a raw object) are left alone: a type that reaches the host is a family's to serve
(`_io.FileIO`, `_socket.socket`, `mmap.mmap`), and the audit hook guards the C types themselves.

A new `posix` or `_io` (a freshly built module) gets the same treatment by name: `for_fresh(module, name)`
says what to install for one attribute (the interposer applies it when `_imp` creates or executes a module).
Modules that are not loaded when this table is built (termios, `_posixshmem`, readline: importing readline has
side effects on the terminal) are only ever handled that way, when they are first imported inside.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ocall_bridge.calls import uses

from .errors import Unsupported

MODULES = ("posix", "_io", "_socket", "select", "fcntl", "_posixsubprocess", "_posixshmem", "mmap", "resource",
           "termios", "readline", "_signal")

PURE: dict[str, frozenset[str]] = {
    "posix": frozenset({
        "WCOREDUMP", "WEXITSTATUS", "WIFCONTINUED", "WIFEXITED", "WIFSIGNALED", "WIFSTOPPED", "WSTOPSIG",
        "WTERMSIG", "waitstatus_to_exitcode", "confstr", "sysconf", "fpathconf", "pathconf", "cpu_count",
        "getloadavg", "ctermid", "fspath", "major", "minor", "makedev", "register_at_fork",
        "sched_get_priority_max", "sched_get_priority_min", "sched_yield", "strerror", "times",
    }),
    "_io": frozenset({"text_encoding"}),
    "_socket": frozenset({"CMSG_LEN", "CMSG_SPACE", "htonl", "htons", "ntohl", "ntohs", "inet_aton", "inet_ntoa",
                          "inet_ntop", "inet_pton"}),
    "resource": frozenset({"getpagesize", "getrlimit", "getrusage"}),
    # readline's in-memory state (completer, history list, hooks): the process's own.  Its file calls
    # (read_history_file, write_history_file, append_history_file, read_init_file) stay refused.
    "readline": frozenset({"set_completer", "get_completer", "set_completer_delims", "get_completer_delims",
                           "parse_and_bind", "set_completion_display_matches_hook", "set_startup_hook",
                           "set_pre_input_hook", "get_line_buffer", "insert_text", "redisplay", "get_begidx",
                           "get_endidx", "add_history", "clear_history", "get_history_length",
                           "set_history_length", "get_current_history_length", "get_history_item",
                           "remove_history_item", "replace_history_item", "set_auto_history",
                           "get_completion_type"}),
    # Signal dispositions and timers of the process the enclave runs in: the program's own on both backends
    # (on sim that process is shared with the host, as docs/threat-model.md says).
    "_signal": frozenset({"alarm", "default_int_handler", "getitimer", "setitimer", "getsignal", "signal",
                          "siginterrupt", "pause", "pthread_sigmask", "sigpending", "sigwait", "sigwaitinfo",
                          "sigtimedwait", "strsignal", "valid_signals"}),
}

WHY = "no enclave call serves it, so it is refused rather than let through to the host"

_refusals: dict[tuple[str, str], Callable[..., Any]] = {}  # one per name, so identity checks agree everywhere


def refusal(module: str, name: str) -> Callable[..., Any]:
    """The replacement that refuses `module.name` with ENOSYS (the same object every time)."""
    key = (module, name)
    fn = _refusals.get(key)
    if fn is None:
        call = f"{module.lstrip('_')}.{name}" if module != "posix" else f"os.{name}"

        def refused(*args: Any, **kwargs: Any) -> Any:
            raise Unsupported(call, WHY)

        refused.__name__ = refused.__qualname__ = name
        refused.__doc__ = f"Refused inside an enclave: {call} {WHY}."
        refused.__posix_shim_refused__ = True  # type: ignore[attr-defined]
        fn = _refusals[key] = uses(partial=f"every call: {WHY}")(refused)
    return fn


def needs_serving(module: str, name: str, value: Any) -> bool:
    """A public callable that is neither a type nor PURE: served by a family, or else refused."""
    return (not name.startswith("_") and callable(value) and not isinstance(value, type)
            and name not in PURE.get(module, ()))


def for_fresh(module: str, name: str, value: Any) -> Callable[..., Any] | None:
    """What a freshly built `module` must get for `name` when no family serves it: a refusal, or None (keep)."""
    return refusal(module, name) if needs_serving(module, name, value) else None


_table_cache: list[Any] = [None, {}]  # (the loaded MODULES and their sizes, the table)


def table() -> dict[Any, Any]:
    """original -> refusal for every public callable of the MODULES loaded now (computed again only when one
    was loaded, replaced or grew since)."""
    loaded = tuple((name, id(m), len(vars(m))) for name in MODULES if (m := sys.modules.get(name)) is not None)
    if _table_cache[0] != loaded:
        _table_cache[1] = _table()
        _table_cache[0] = loaded
    return _table_cache[1]


def _table() -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for module_name in MODULES:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name, value in list(vars(module).items()):
            if needs_serving(module_name, name, value):
                out[value] = refusal(module_name, name)
    return out


# Loaded here so their tables exist before any enclave runs: cheap, side-effect-free C modules the families
# import anyway.  termios, _posixshmem and readline are handled by name when first imported (module docstring).
import fcntl  # noqa: E402,F401
import mmap  # noqa: E402,F401
import resource  # noqa: E402,F401
import select  # noqa: E402,F401

PATCHES: dict[Any, Any] = table()

__all__ = ["MODULES", "PATCHES", "PURE", "for_fresh", "needs_serving", "refusal", "table"]
