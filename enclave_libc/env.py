"""The enclave's own environment: `os.environ` starts from the policy, not from the host.

Each enclave has one environment, a dict of bytes kept in `RT.extra["environ"]`.  It is built once, the first
time the program looks at it: the host variables the policy allows (asked with the `environ` ocall - the host
filters them by its own copy of the policy, and the enclave filters again rather than take its word), then the
values the policy itself sets, which win.  From then on getenv/putenv/unsetenv never leave the enclave.

Inside, `os.environ` and `os.environb` are `os._Environ` objects whose data is the current enclave's dict, and
`posix.environ` is a mapping over the same dict; the interposer swaps them in for the host's (`swap`) and the
host's back on the way out, so a host embedding the sim backend has its own `os.environ` again between runs,
untouched.

A reference to the enclave's mapping can outlive the enclave: pytest's `monkeypatch.setenv` inside a test body
(`pytest --enclave=sim`) keeps `os.environ` to restore it at teardown, which runs after the enclave is left.
Once left, the mapping serves the environment of the enclave just left (`_left`), so that restore lands in the
state it was taken from; it never falls through to the host's.  Entering an enclave drops that leftover, so with
the enclave's runtime switched off from inside (`RT = None`) the mapping still refuses (issue 13), and no enclave
sees the one before it.  Writes through it call this module's putenv/unsetenv, not whatever `os.putenv` is at
the time: outside an enclave that is the real one, which would change the host's C environment.

`os.putenv`/`os.unsetenv` keep their native meaning: they change the environment the C library and child
processes would see, not `os.environ`.  Inside an enclave there are no children and the C library's environment
is the host process's, which the enclave must not change; so they are checked exactly as natively (same
errors, same audit events) and recorded in `RT.extra["putenv"]`, and the host's environment stays untouched.
Consequence, documented in docs/time-env.md: `os.environ["TZ"] = ...; time.tzset()` does not change libc's
local time zone inside an enclave (zoneinfo is the way to use a zone).
"""

from __future__ import annotations

import logging
import os as _os
import sys
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from ocall_bridge import originals
from ocall_bridge.calls import uses

from . import runtime
from .errors import Unsupported

log = logging.getLogger("posix_shim.enclave")

_fsencode, _fsdecode, _strerror = (originals.get("os", n) for n in ("fsencode", "fsdecode", "strerror"))
# The host's mappings, as the registry captured them before any enclave swapped its own in.
_host_environ, _host_environb = originals.get("os", "environ"), originals.get("os", "environb")
_host_posix_environ = originals.get("posix", "environ")
_audit = sys.audit
_EINVAL = 22
MAX_VARIABLES = 4096  # an environment larger than this is cut (and the cut logged)

_load_lock = threading.RLock()

# The environment of the enclave most recently left, while no enclave is entered (see the module docstring).
_left: dict[bytes, bytes] | None = None


def _valid_name(name: bytes) -> bool:
    return bool(name) and b"=" not in name and b"\0" not in name


def _offered(rt: runtime.EnclaveRuntime) -> list[tuple[bytes, bytes]]:
    """Every variable the host offers, page by page.

    Names must come strictly increasing, so a host cannot make the enclave loop (each page moves forward) nor
    offer one name twice; a host that breaks that stops the listing there, with what came before kept.
    """
    offered: list[tuple[bytes, bytes]] = []
    after = b""
    try:
        while len(offered) < MAX_VARIABLES:
            page = rt.ocall.environ(after)
            if not page:
                break
            for name, _ in page:
                if name <= after:
                    log.error("posix_shim: host violation in environ: %r does not come after %r", name, after)
                    return offered
                after = name
            offered += page
    except OSError as exc:  # not allowed by the policy, or the host failed: the policy's values alone
        log.info("no (more) host environment for the enclave: %s", exc)
    return offered


def _load(rt: runtime.EnclaveRuntime) -> dict[bytes, bytes]:
    """The environment an enclave starts with: the allowed host variables, then the policy's own values."""
    access = rt.access
    data: dict[bytes, bytes] = {}
    for name, value in _offered(rt):
        if not _valid_name(name) or b"\0" in value:
            log.error("posix_shim: host violation in environ: malformed variable %r dropped", name[:64])
            continue
        if not access.env_allowed(_fsdecode(name)):
            # The host sent what the policy does not allow: the enclave does not take it.
            log.error("posix_shim: host violation in environ: %r is not allowed by the policy; dropped", name)
            continue
        data[name] = value
    for key, text in access.env_values().items():
        data[_fsencode(key)] = _fsencode(text)
    return data


def current_data() -> dict[bytes, bytes]:
    """The current enclave's environment dict.

    With no enclave object it refuses rather than fall back to the host's dict: `enclave_libc.runtime.RT = None`
    from inside must not turn the enclave's `os.environ` into the host's (issue 13).  The interposer puts the
    host's own objects back when an enclave is left, so the host never reads through this."""
    rt = runtime.RT
    if not rt:
        if _left is not None:
            return _left
        raise Unsupported("os.environ", "no enclave is active")
    data = rt.extra.get("environ")
    if data is None:
        with _load_lock:
            data = rt.extra.get("environ")
            if data is None:
                data = rt.extra["environ"] = _load(rt)
    return data


class EnclaveEnviron(_os._Environ):
    """`os.environ` (or `os.environb`) inside: an os._Environ over whichever enclave is current.

    Only `_data` differs from the host's object, so every method of os._Environ behaves as natively; its
    `__setitem__`/`__delitem__` call the module-level putenv/unsetenv of `os`, which are this module's.
    """

    def __init__(self, encodekey: Any, decodekey: Any, encodevalue: Any, decodevalue: Any) -> None:
        self.encodekey = encodekey
        self.decodekey = decodekey
        self.encodevalue = encodevalue
        self.decodevalue = decodevalue

    @property
    def _data(self) -> dict[bytes, bytes]:
        return current_data()

    def __setitem__(self, key: Any, value: Any) -> None:
        key, value = self.encodekey(key), self.encodevalue(value)
        putenv(key, value)  # this module's, even after the enclave is left (os.putenv is the host's then)
        current_data()[key] = value

    def __delitem__(self, key: Any) -> None:
        encoded = self.encodekey(key)
        unsetenv(encoded)
        try:
            del current_data()[encoded]
        except KeyError:
            raise KeyError(key) from None


class PosixEnviron(MutableMapping):
    """`posix.environ` inside: the enclave's bytes dict, never the host's."""

    def __getitem__(self, key: bytes) -> bytes:
        return current_data()[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        current_data()[key] = value

    def __delitem__(self, key: bytes) -> None:
        del current_data()[key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(current_data()))

    def __len__(self) -> int:
        return len(current_data())

    def copy(self) -> dict[bytes, bytes]:
        return dict(current_data())

    def __repr__(self) -> str:
        return repr(current_data())


def _check_bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"bytes expected, not {type(value).__name__}")
    return value


# The same codecs os.py gives the host's os.environ and os.environb.
environ = EnclaveEnviron(_host_environ.encodekey, _host_environ.decodekey, _host_environ.encodevalue,
                         _host_environ.decodevalue)
environb = EnclaveEnviron(_check_bytes, bytes, _check_bytes, bytes)
posix_environ = PosixEnviron()


def _env_bytes(value: Any) -> bytes:
    b = _fsencode(value)  # str, bytes or PathLike; the TypeError is the native one
    if b"\0" in b:
        raise ValueError("embedded null byte")
    return b


def _changes() -> dict[bytes, bytes | None] | None:
    rt = runtime.RT
    return None if not rt else rt.extra.setdefault("putenv", {})


@uses()
def putenv(name: Any, value: Any, /) -> None:
    key, val = _env_bytes(name), _env_bytes(value)
    if b"=" in key:
        raise ValueError("illegal environment variable name")
    _audit("os.putenv", name, value)
    if not key:
        raise OSError(_EINVAL, _strerror(_EINVAL))
    changes = _changes()
    if changes is not None:
        changes[key] = val


@uses()
def unsetenv(name: Any, /) -> None:
    key = _env_bytes(name)
    _audit("os.unsetenv", name)
    if not key or b"=" in key:
        raise OSError(_EINVAL, _strerror(_EINVAL))
    changes = _changes()
    if changes is not None:
        changes[key] = None


def swap() -> Callable[[], None]:
    """Start an enclave with no environment of the one before it; the undo keeps this one's for after.

    The interposer calls it on install and the undo on uninstall.  The mappings themselves (`os.environ`,
    `os.environb`, `posix.environ`, and module globals named `environ`/`environb` that captured the host's, as
    `from os import environ` does) are mutable objects no PATCHES dictionary can key by their value alone:
    NAMED_PATCHES below has the interposer swap them under those two names only.
    """
    global _left
    _left = None  # an enclave never sees the environment of the one before it
    rt = runtime.RT

    def undo() -> None:
        global _left
        # What the enclave's mapping serves once this enclave is left: its environment if it ever looked at it
        # (else there is no state anyone could have seen, and the mapping refuses as before).
        _left = rt.extra.get("environ") if rt else None

    return undo


# key -> (original, replacement) pairs: pairs, not a dict, because mappings cannot be dictionary keys.
_SWAPPED = ((_host_environ, environ), (_host_environb, environb), (_host_posix_environ, posix_environ))
NAMED_PATCHES: dict[str, tuple[tuple[Any, Any], ...]] = {"environ": _SWAPPED, "environb": _SWAPPED}

PATCHES: dict[Any, Any] = originals.patches("posix", {"putenv": putenv, "unsetenv": unsetenv})

__all__ = ["NAMED_PATCHES", "PATCHES", "EnclaveEnviron", "current_data", "environ", "environb", "putenv", "swap",
           "unsetenv"]
