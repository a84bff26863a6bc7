"""The host's own references to the real OS, captured before any interposition.

The interposer rewrites `posix`, `os`, `socket`, `select` and `time` attributes and the references other modules
captured from them.  It never touches this package (it skips it by name), and it cannot reach into the
namespaces below, which are plain copies taken at import: so the host keeps performing real calls even while
the enclave's interposition is installed in the same process (the sim backend).
"""

from __future__ import annotations

import _multiprocessing
import _posixsubprocess
import _socket as _csocket
import fcntl as _fcntl
import os as _pyos
import posix
import select as _select
import signal as _signal
import socket as _socket
import time as _time
from types import SimpleNamespace

os = SimpleNamespace(**vars(posix))
os.fsencode = _pyos.fsencode  # pure functions of os.py, used by name, captured all the same
os.fsdecode = _pyos.fsdecode
socket = SimpleNamespace(**vars(_csocket))
socket.socket_class = _socket.socket  # the Python class, for accept()/detach() conveniences on the host
socket.fromfd = _socket.fromfd
select = SimpleNamespace(**vars(_select))
time = SimpleNamespace(**vars(_time))
fcntl = SimpleNamespace(**vars(_fcntl))
signal = SimpleNamespace(**vars(_signal))
posixsubprocess = SimpleNamespace(**vars(_posixsubprocess))
multiprocessing = SimpleNamespace(**vars(_multiprocessing))

if getattr(posix.open, "__posix_shim__", False):  # pragma: no cover - an ordering bug, not a runtime state
    raise ImportError("ocall_bridge.host.real imported after interposition: the host would call the enclave")
