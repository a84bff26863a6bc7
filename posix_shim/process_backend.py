"""The process backend: the enclave is a child Python process, the runner is its host.

    python -m posix_shim --backend process app.py
    Enclave(backend="process")

The child (`posix_shim/child.py`) gets one end of a socketpair, builds the enclave runtime on an
`ocall_bridge.enclave_channel.EnclaveTransport`, installs interposition and then runs what the host asks for (ecalls:
run a program, call a function, exit).  This process serves its ocalls with its own `Host` (handle table,
policy) on an `ocall_bridge.enclave_channel.HostChannel`.  Only plain data crosses: the policy as `Access.to_data()`,
ecall arguments and results as tagged JSON (`encode_plain`).  Nothing is ever unpickled.

Exit status and signals follow the shell's conventions, as if the program ran natively:

* the status of `run` is the program's (SystemExit code, 1 after a traceback, 130 after Ctrl-C);
* the child is in its own process group, so a terminal's Ctrl-C reaches it once: the runner forwards SIGINT,
  SIGTERM, SIGHUP and SIGQUIT to it while an ecall is in flight (when those signals have their default
  handlers in the runner's main thread);
* if the child dies of a signal the runner forwarded, the runner dies of the same signal (default handler),
  which is what the caller would have seen natively; if it dies of any other signal N, the runner reports it
  on stderr and the status is 128 + N (SIGKILL -> 137);
* if the child exits on its own before answering (os._exit in the program), its exit code is the status.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ocall_bridge.access import Access
from ocall_bridge.framing import (
    MAX_ECALL,
    OP_CALL,
    OP_EXIT,
    OP_INIT,
    OP_RUN,
    ChannelClosed,
    ProtocolError,
    receive_listener,
)
from ocall_bridge.host_channel import HostChannel
from ocall_bridge.ring import RingFds

from . import prestart
from .ecall import EnclaveCallError, EnclaveStateError, EnclaveUnavailable
from .plain import decode_plain, encode_plain
from .prestart import (  # noqa: F401  (the names were defined here first)
    INTERPRETER_ENV,
    RUNTIME_ENV,
    RUNTIME_ENV_PREFIX,
    child_command,
    environment,
)
from .wiring import make_host

# Options this backend takes for itself; every other option goes to make_host, and its plain-data ones also to
# the child's make_client.
OWN_OPTIONS = ("python", "max_workers", "start_timeout", "confine", "transport")
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
EXIT_UNCONFINED = 2  # posix_shim.child's status when the kernel lacks what confinement needs



def plain_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options that can cross to the child (the rest, file objects or callables, stay on the host)."""
    out = {}
    for key, value in options.items():
        try:
            encode_plain(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


# -- signals -----------------------------------------------------------------------------------------------

_live: weakref.WeakSet[ProcessBackend] = weakref.WeakSet()  # every child still running, closed at exit
_in_ecall: set[ProcessBackend] = set()  # children with an ecall in flight: signals are forwarded to these
_saved_handlers: dict[int, Any] = {}
_forward_lock = threading.Lock()


def _is_default(signum: int, handler: Any) -> bool:
    return handler is signal.default_int_handler if signum == signal.SIGINT else handler == signal.SIG_DFL


def _forward(signum: int, frame: Any) -> None:
    for backend in list(_in_ecall):
        backend.forwarded.add(signum)
        try:
            os.kill(backend.pid, signum)
        except OSError:
            pass


@contextmanager
def _forwarding(backend: ProcessBackend) -> Iterator[None]:
    """While an ecall is in flight, signals the user sends the runner go to the child instead.

    Only the main thread can install handlers, and a handler the embedding program installed itself is left
    alone: then it is that program's business what a signal means.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _forward_lock:
        if not _in_ecall:
            for signum in FORWARDED_SIGNALS:
                current = signal.getsignal(signum)
                if _is_default(signum, current):
                    _saved_handlers[signum] = current
                    signal.signal(signum, _forward)
        _in_ecall.add(backend)
    try:
        yield
    finally:
        with _forward_lock:
            _in_ecall.discard(backend)
            if not _in_ecall:
                for saved, handler in _saved_handlers.items():
                    signal.signal(saved, handler)
                _saved_handlers.clear()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _die_of(signum: int) -> None:
    """Die of `signum` as the runner would have natively (the child, which got it from us, did)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    time.sleep(1)  # pragma: no cover - the signal is fatal; this only runs if something keeps it from being


# -- the backend -------------------------------------------------------------------------------------------


def child_environment(access: Access) -> dict[str, str]:
    """The environment the enclave process starts with: interpreter and runtime settings plus what the policy
    grants (the names and the rule: prestart.py)."""
    return environment(access.env_allowed, access.env_values())


class ProcessBackend:
    """One enclave in one child process, with its own Host (handle table, policy) in this process."""

    def __init__(self, access: Access, **options: Any) -> None:
        python = options.pop("python", sys.executable)
        max_workers = int(options.pop("max_workers", 256))
        start_timeout = float(options.pop("start_timeout", 30.0))
        # Kernel confinement (seccomp, Landlock, no_new_privs) is the process backend's promise; False exists for
        # development and for the tests that show what each wall stops (docs/threat-model.md).
        self.confined = bool(options.pop("confine", True))
        self.supervisor: Any = None
        self.access = access
        self.forwarded: set[int] = set()
        self.status: int | None = None  # the child's exit status once it is gone (negative: signal)
        self._reaped = threading.Event()
        # "ring" (the default): quick calls through shared memory (ocall_bridge/ring.py); "socket": everything
        # over the socketpair, as before the ring existed.
        transport = options.pop("transport", None) or os.environ.get("POSIX_SHIM_TRANSPORT") or "ring"
        if transport not in ("ring", "socket"):
            raise ValueError(f"transport must be 'ring' or 'socket', not {transport!r}")
        env = child_environment(access)
        # The enclave process `python -m posix_shim` started before it loaded the policy (prestart.py), when it was
        # started exactly as this one would be; it waits for the ring's descriptors before confining itself.
        early = prestart.take(python, env, transport == "ring") if self.confined else None
        ring = RingFds.create() if transport == "ring" else None
        try:
            if early is not None:
                self.proc, parent = early
                if ring is not None:
                    prestart.send_ring(parent, ring.all())
            else:
                extra = ([] if self.confined else ["unconfined"]) + ([ring.to_arg()] if ring is not None else [])
                self.proc, parent = prestart.spawn(python, env, extra, tuple(ring.all()) if ring is not None else ())
        except BaseException:
            if early is not None:
                early[1].close()
                early[0].kill()
                early[0].wait()
            if ring is not None:
                ring.close()
            raise
        self.pid = self.proc.pid
        try:
            # Made while the child boots on the other CPU (the host's families, the policy wrapper; nothing the
            # child's start needs): start-up is the two processes' work one after the other, less what overlaps.
            # A process of its own: cryptography is imported at the first quote, not here (make_host).
            self.host = make_host(access, options, in_process=False)
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            parent.close()
            if ring is not None:
                ring.close()
            raise
        if self.confined:
            try:
                self._supervise(parent, start_timeout)
            except BaseException:
                if ring is not None:
                    ring.close()
                raise
        self.channel = HostChannel(self.host, parent, on_close=self._on_channel_closed, max_workers=max_workers,
                                   pass_fds=True, ring=ring)
        self.channel.start()
        _live.add(self)
        try:
            self._start(access, options, start_timeout)
        except BaseException:
            self._kill()
            raise

    def _supervise(self, sock: socket.socket, timeout: float) -> None:
        """Take the confined child's seccomp listener and serve its forwarded native calls."""
        from ocall_bridge.host import child_memory
        from ocall_bridge.host.supervisor import Supervisor

        # The supervisor's cffi declarations are parsed (pycparser, ~15 ms) now, while the child boots and
        # confines itself on the other CPU, rather than after its listener arrived, when the child waits for us.
        child_memory._bind()
        try:
            listener = receive_listener(sock, timeout)
        except (ChannelClosed, ProtocolError) as exc:
            sock.close()
            try:
                status = self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                status = self.proc.wait()
            self.host.close()
            if status == EXIT_UNCONFINED:
                raise EnclaveUnavailable(f"the process backend cannot confine its enclave here: {exc}") from None
            raise RuntimeError(f"the enclave process could not start: {exc} (status {status})") from None
        # The child's real cwd and umask follow the enclave's (enclave_libc keeps them in step with an fchdir and a
        # umask of its own), so the kernel's view of the child answers both; a child lying here gains nothing,
        # since the policy judges the final absolute path and mode.
        cwd_link, status_file = b"/proc/%d/cwd" % self.pid, f"/proc/{self.pid}/status"

        def umask() -> int:
            with open(status_file) as f:
                for line in f:
                    if line.startswith("Umask:"):
                        return int(line.split()[1], 8)
            return 0o022

        self.supervisor = Supervisor(self.host, listener, self.pid, lambda: os.readlink(cwd_link), umask=umask)
        self.supervisor.start()

    def _start(self, access: Access, options: dict[str, Any], timeout: float) -> None:
        # The handshake is an ecall like any other; a watchdog bounds it, so a child that never answers
        # (a broken interpreter, a hung import) cannot hang the runner.
        timer = threading.Timer(timeout, self._kill)
        timer.daemon = True
        timer.start()
        try:
            payload = {"policy": access.to_data(), "options": plain_options(options)}
            try:
                self._ecall(OP_INIT, payload)
            except (EnclaveCallError, EnclaveStateError) as exc:
                raise RuntimeError(f"the enclave process could not start: {exc}") from None
            except _ChildGone:
                raise RuntimeError(f"the enclave process could not start: it {self._how()}") from None
        finally:
            timer.cancel()

    # -- ecalls --------------------------------------------------------------------------------------------
    def _ecall(self, op: int, payload: Any) -> Any:
        if self.channel.closed is not None:
            raise EnclaveStateError(f"the enclave process is gone ({self._how()})")
        data = encode_plain(payload)
        if len(data) > MAX_ECALL:
            raise ValueError(f"ecall payload of {len(data)} bytes exceeds {MAX_ECALL}")
        try:
            with _forwarding(self):
                raw = self.channel.ecall(op, data)
        except ChannelClosed:
            self._reaped.wait(10)
            gone = _ChildGone(self.status)
            gone.forwarded, self.forwarded = self.forwarded, set()
            raise gone from None
        self.forwarded = set()  # signals the child received and survived: nothing more to do
        try:
            reply = decode_plain(raw)
        except ValueError as exc:
            raise EnclaveStateError(f"the enclave answered an ecall with {exc}") from None
        if not isinstance(reply, dict) or len(reply) != 1:
            raise EnclaveStateError("the enclave answered an ecall with a malformed reply")
        (key, value), = reply.items()
        if key == "ok":
            return value
        if key == "raise" and isinstance(value, list) and len(value) == 2:
            # KeyboardInterrupt and SystemExit leave an ecall as they leave a sim call: as themselves.
            if value[0] == "SystemExit":
                raise SystemExit(value[1])
            raise KeyboardInterrupt
        if key == "error" and isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value):
            raise EnclaveCallError(*value)
        raise EnclaveStateError("the enclave answered an ecall with a malformed reply")

    def run(self, kind: str, target: str, args: list[str]) -> int:
        try:
            status = self._ecall(OP_RUN, {"kind": kind, "target": target, "args": list(args)})
        except _ChildGone as gone:
            return self._status_after_death(gone.forwarded)
        if not isinstance(status, int) or isinstance(status, bool) or not 0 <= status <= 255:
            raise EnclaveStateError(f"the enclave reported exit status {status!r}")
        return status

    def call(self, target: str, args: tuple) -> Any:
        try:
            result = self._ecall(OP_CALL, {"target": target, "args": list(args)})
        except _ChildGone as gone:
            self._status_after_death(gone.forwarded)
            raise EnclaveStateError(f"the enclave process died during the call ({self._how()})") from None
        return result

    def _status_after_death(self, forwarded: set[int]) -> int:
        status = self.status
        if status is None:
            return 1
        if status >= 0:
            return status  # the program ended the process itself (os._exit): its code, silently
        signum = -status
        if signum in forwarded:
            _die_of(signum)
        try:
            sys.stderr.write(f"posix_shim: the enclave process (pid {self.pid}) was killed by "
                             f"{_signal_name(signum)}\n")
            sys.stderr.flush()
        except Exception:
            pass
        return 128 + signum

    def _how(self) -> str:
        if self.status is None:
            return self.channel.closed or "running"
        if self.status < 0:
            return f"killed by {_signal_name(-self.status)}"
        return f"exited with status {self.status}"

    # -- the child's end -----------------------------------------------------------------------------------
    def _on_channel_closed(self, reason: str) -> None:
        """From the reader thread: the channel ended, so the child is exiting or dead.  Reap it now."""
        try:
            try:
                self.status = self.proc.wait(2)
            except subprocess.TimeoutExpired:
                # The child closed the channel but lives on (broken protocol, or stuck): it cannot be served.
                self.proc.kill()
                self.status = self.proc.wait()
        finally:
            self._reaped.set()

    def _kill(self) -> None:
        _live.discard(self)
        try:
            self.proc.kill()
        except OSError:
            pass
        self.channel.shutdown()
        self._reaped.wait(10)
        self._stop_supervisor()
        self.host.close()

    def _stop_supervisor(self) -> None:
        if self.supervisor is not None:
            self.supervisor.close()
            self.supervisor = None

    def close(self) -> None:
        """Let the program's remaining threads and atexit handlers finish, then reap the child."""
        _live.discard(self)
        try:
            if self.channel.closed is None:
                try:
                    self._ecall(OP_EXIT, None)
                except _ChildGone as gone:
                    if self.status is not None and -self.status in gone.forwarded:
                        _die_of(-self.status)
                except EnclaveStateError:
                    pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        finally:
            self.channel.shutdown()
            self._reaped.wait(10)
            self._stop_supervisor()
            self.host.close()


class _ChildGone(Exception):
    def __init__(self, status: int | None) -> None:
        super().__init__(status)
        self.status = status
        self.forwarded: set[int] = set()


@atexit.register
def _close_all() -> None:
    # An embedding program that never closed its enclaves: end them cleanly rather than let them find their
    # host gone.
    for backend in list(_live):
        try:
            backend.close()
        except Exception:
            pass


__all__ = ["ProcessBackend", "encode_plain", "decode_plain"]
