"""The enclave process of the process backend (started by posix_shim/process_backend.py, never by hand).

    python -P -c "from posix_shim.child import main; main()" FD HOST_PID

FD is this process's end of the socketpair.  The child moves it out of the way, arms its fault handling,
waits for the host's INIT ecall (the policy as plain data), builds the enclave runtime on the socket, attaches
the standard streams (the host's, through ocalls), installs interposition, and then serves ecalls on its main
thread until the host says EXIT or goes away.  Interposition stays installed for the life of the process: the
program's threads, atexit handlers and finalizers all run inside the enclave.
"""

from __future__ import annotations

# Everything the child needs after interposition is imported (and captured) before it.
import atexit
import contextlib
import ctypes
import gc
import os
import resource
import signal
import sys
import threading
import traceback
from typing import Any, NoReturn

try:  # the session's tripwire wraps cffi's library loader (posix_shim/tripwires.py); the confinement no longer
    import _cffi_backend  # noqa: F401  # loads it, and loading it later would be a native open through the host
except ImportError:  # pragma: no cover - cffi is a dependency; the tripwire then has nothing to wrap
    pass

from enclave_libc import runtime
from enclave_libc.runtime import EnclaveRuntime
from ocall_bridge.access import Access
from ocall_bridge.enclave_channel import EnclaveTransport
from ocall_bridge.errors import HostGone
from ocall_bridge.framing import HIGH_FD, OP_CALL, OP_EXIT, OP_INIT, OP_RUN, move_high, send_listener
from ocall_bridge.ring import RingClient, RingFds

from . import program
from .ecall import check_plain, resolve_target
from .plain import decode_plain, encode_plain
from .policy.model import from_data as policy_from_data
from .prestart import RING_LATER, receive_ring
from .session import inside
from .wiring import make_client

EXIT_HOST_GONE = 74  # EX_IOERR: nobody waits for this status (the host is gone), but it says what happened
PDEATH_SIGNAL = signal.SIGRTMIN + 6  # arrives when the host dies; it only wakes the watchdog
_write, _exit, _getpid = os.write, os._exit, os.getpid
_sleep = __import__("time").sleep


def _move_high(fd: int) -> int:
    """The socket goes to a high descriptor, below the soft limit, so C code writing to small fd numbers cannot
    hit it; the watchdog's pipe goes just above it."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return move_high(fd, max(10, min(soft, HIGH_FD + 24) - 24))


def _arm_parent_death(host_pid: int, wake_fd: int) -> None:
    """The backstop behind the watchdog's POLLHUP: a signal when the process that started us dies.

    The signal only wakes the watchdog, which checks getppid(): the kernel also sends it when the *thread* that
    spawned the child exits, while the host lives on.  Catching it (rather than SIGKILL) keeps the clear
    message and the EIO the program's pending ocalls get.
    """
    def on_parent_death(signum: int, frame: Any) -> None:
        with contextlib.suppress(OSError):
            _write(wake_fd, b"!")

    signal.signal(PDEATH_SIGNAL, on_parent_death)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(PDEATH_SIGNAL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog's POLLHUP alone
    if os.getppid() != host_pid:  # the host died before the signal was armed
        on_parent_death(PDEATH_SIGNAL, None)


def _policy_from_data(data: Any) -> Access:
    """The host's policy, rebuilt from plain data (model.from_data refuses what it cannot rebuild)."""
    return policy_from_data(data)


_RUNTIME_DIRS = tuple(os.path.dirname(os.path.abspath(str(m.__file__))) + os.sep  # regular packages: __file__ set
                      for m in (sys.modules["ocall_bridge"], sys.modules["enclave_libc"], sys.modules[__package__]))


def _trim_interrupt_frames() -> None:
    """A Ctrl-C traceback ends where the program was, as natively: not in the enclave runtime under it.

    Here KeyboardInterrupt comes from a Python-level SIGINT handler, usually while the program waits in an
    ocall, so the raw traceback ends in enclave_libc and the transport; natively it ends at the program's line.
    """
    original = program.print_exception

    def print_exception(exc: BaseException) -> None:
        if isinstance(exc, KeyboardInterrupt):
            tb, last_own = exc.__traceback__, None
            while tb is not None:
                if not tb.tb_frame.f_code.co_filename.startswith(_RUNTIME_DIRS):
                    last_own = tb
                tb = tb.tb_next
            if last_own is not None:
                last_own.tb_next = None
        original(exc)

    program.print_exception = print_exception


def _route_signal_handlers(transport: EnclaveTransport) -> None:
    """Every Python-level handler the program installs runs through `transport.run_handler`.

    A handler may raise (KeyboardInterrupt, SystemExit, anything) at any bytecode of the main thread - including
    in the middle of writing or reading a frame; run_handler defers it until the frame is complete.
    `signal.getsignal` answers what the program installed, as natively.
    """
    real_signal, real_getsignal = signal.signal, signal.getsignal
    installed: dict[int, Any] = {}
    wrappers: dict[int, Any] = {}

    def enclave_signal(signalnum: int, handler: Any) -> Any:
        previous = enclave_getsignal(signalnum)
        if callable(handler):
            def wrapper(signum: int, frame: Any, handler: Any = handler) -> None:
                transport.run_handler(handler, signum, frame)

            real_signal(signalnum, wrapper)
            wrappers[int(signalnum)] = wrapper
        else:
            real_signal(signalnum, handler)
            wrappers.pop(int(signalnum), None)
        installed[int(signalnum)] = handler
        return previous

    def enclave_getsignal(signalnum: int) -> Any:
        current = real_getsignal(signalnum)
        if int(signalnum) in installed and current is wrappers.get(int(signalnum), current):
            return installed[int(signalnum)]
        return current

    enclave_signal(signal.SIGINT, signal.default_int_handler)
    enclave_signal.__doc__, enclave_getsignal.__doc__ = real_signal.__doc__, real_getsignal.__doc__
    signal.signal, signal.getsignal = enclave_signal, enclave_getsignal


class Child:
    def __init__(self, fd: int, host_pid: int, ring: RingClient | None = None) -> None:
        self.host_pid = host_pid
        self.transport = EnclaveTransport(fd, ring=ring)
        wake_fd = self.transport.start_watchdog(self._host_gone, self._exit_host_gone, host_pid)
        _arm_parent_death(host_pid, wake_fd)
        _route_signal_handlers(self.transport)
        _trim_interrupt_frames()
        self.rt: EnclaveRuntime | None = None
        self._session = contextlib.ExitStack()  # entered once, never left: the process ends inside it

    @staticmethod
    def _host_gone(reason: str) -> None:
        # Straight to this process's own stderr (the host's, inherited): the enclave's fd 2 was an ocall.
        with contextlib.suppress(OSError):
            _write(2, f"posix_shim: the host of this enclave is gone ({reason}); enclave process {_getpid()} "
                      f"exits\n".encode())

    @staticmethod
    def _exit_host_gone() -> None:
        # Pending and later ocalls already fail with HostGone (EIO): give the program a moment to unwind.
        _sleep(0.2)
        _exit(EXIT_HOST_GONE)

    # -- ecalls --------------------------------------------------------------------------------------------
    def serve(self) -> NoReturn:
        while True:
            try:
                op, seq, payload = self.transport.wait_ecall()
            except KeyboardInterrupt:
                continue  # a Ctrl-C between two ecalls has no program to reach
            except HostGone:
                self._wait_for_watchdog()
            try:
                reply = self.handle(op, decode_plain(payload))
            except HostGone:
                self._wait_for_watchdog()
            except BaseException as exc:  # a broken request must still get an answer
                reply = {"error": [type(exc).__name__, str(exc), traceback.format_exc()]}
            if op == OP_EXIT:
                self.transport.closing = True
            try:
                self.transport.reply(op, seq, self._encode(reply))
            except KeyboardInterrupt:
                pass  # deferred until the reply was sent whole: the program it was meant for has finished
            except HostGone:
                self._wait_for_watchdog()
            if op == OP_EXIT:
                _exit(0)

    @staticmethod
    def _encode(reply: dict[str, Any]) -> bytes:
        try:
            return encode_plain(reply)
        except (TypeError, ValueError) as exc:
            return encode_plain({"error": [type(exc).__name__, f"the result cannot cross: {exc}", ""]})

    def _wait_for_watchdog(self) -> NoReturn:
        if self.transport.closing:
            _exit(0)
        _sleep(2)  # the watchdog prints the message and exits well before this
        _exit(EXIT_HOST_GONE)

    def handle(self, op: int, request: Any) -> dict[str, Any]:
        if op == OP_INIT:
            self.init(request)
            return {"ok": None}
        if self.rt is None:
            raise RuntimeError("the enclave was not initialized")
        if op == OP_RUN:
            return {"ok": self.run(request["kind"], request["target"], request["args"])}
        if op == OP_CALL:
            return self.call(request["target"], request["args"])
        if op == OP_EXIT:
            self.finish()
            return {"ok": None}
        raise ValueError(f"unknown ecall operation {op}")

    def init(self, request: dict[str, Any]) -> None:
        access = _policy_from_data(request["policy"])
        client = make_client(self.transport, access, request.get("options") or {})
        rt = EnclaveRuntime(client, access, native=self.transport)
        rt.owns_process = True
        runtime.activate(rt)
        rt.attach_stdio()
        # The program's sys.path[0] replaces this placeholder, as CPython's own does (we started with -P).
        sys.path.insert(0, "")
        self._session.enter_context(inside(rt))
        self.rt = rt
        # The runtime's own objects (its modules, tables, interposition plans: ~26,000) live as long as the
        # process: out of the collector's sight from here on, so neither the program's collections nor the one at
        # exit (finish) walks them again (gc.freeze, as before a fork; ~5-10 ms of every exit).  What the program
        # makes is collected as ever; the program cannot list objects either way (gc.get_objects is refused).
        # The collector was off until now (the boot line): the start made ~40 collections of the same objects.
        gc.freeze()
        gc.enable()  # disabled by the boot line for the start-up (prestart.child_command)

    def run(self, kind: str, target: str, args: list[str]) -> int:
        try:
            return program.run(kind, target, list(args))
        except KeyboardInterrupt:  # arrived after the program's own handlers were left
            return 130

    def call(self, target: str, args: list[Any]) -> dict[str, Any]:
        try:
            result = resolve_target(target)(*args)
            check_plain(result, f"result of {target}")
            return {"ok": result}
        except HostGone:
            raise
        except SystemExit as exc:
            code = exc.code if exc.code is None or isinstance(exc.code, int | str) else str(exc.code)
            return {"raise": ["SystemExit", code]}
        except KeyboardInterrupt:
            return {"raise": ["KeyboardInterrupt", None]}
        except Exception as exc:
            return {"error": [type(exc).__name__, str(exc), traceback.format_exc()]}

    def finish(self) -> None:
        """What the interpreter does at exit, done while the enclave still works: join the program's
        non-daemon threads, run its atexit handlers, collect garbage (closing forgotten files), flush."""
        try:
            me = threading.current_thread()
            for thread in threading.enumerate():
                if thread is not me and not thread.daemon:
                    thread.join()
            atexit._run_exitfuncs()
            gc.collect()
        except KeyboardInterrupt:
            pass
        program._flush_std()


EXIT_UNCONFINED = 2  # the kernel lacks what the confinement needs: refuse to run rather than run unconfined


def _confine(fd: int, ring: RingClient | None) -> None:
    """Put this process behind the kernel's walls before any thread starts and before any program code runs.

    Landlock binds only the calling thread and the threads it creates later (before ABI 8), so this runs
    while the process is single-threaded; the seccomp filter is synchronized over all threads anyway (TSYNC).
    The filter's listener goes to the host (its supervisor serves the native path and socket calls the filter
    forwards) and this process keeps no copy: with one, a program could answer its own notifications.
    """
    from ocall_bridge.native import FORWARDED

    from . import confine

    missing = confine.probe()
    if missing:
        _write(2, ("posix_shim: refusing to start the process backend: this kernel lacks "
                   + "; ".join(missing) + " (use --backend sim for an unconfined development run)\n").encode())
        _exit(EXIT_UNCONFINED)
    # The ring's bells are runtime descriptors as the socket is: the program cannot close or replace them.
    channel = (fd, *(ring.fds() if ring is not None else ()))
    listener = confine.confine_process(forward=FORWARDED, channel_fds=channel, own_pid=_getpid())
    try:
        send_listener(fd, listener)
    except (BrokenPipeError, ConnectionResetError):
        # The host went while this process was starting (a runner ended by a signal: a multiprocessing pool's
        # terminate()): nothing ran yet and there is nobody left to serve it.
        _exit(EXIT_HOST_GONE)
    finally:
        os.close(listener)


def main(argv: list[str] | None = None) -> NoReturn:
    argv = sys.argv[1:] if argv is None else argv
    fd, host_pid = _move_high(int(argv[0])), int(argv[1])
    if RING_LATER in argv[2:]:  # started early (prestart.py): the host sends the ring once it has made it
        received = receive_ring(fd, 256)
        if len(received) < 3:
            _exit(EXIT_HOST_GONE)
        fds: RingFds | None = RingFds(received[0], received[1], received[2:])
    else:
        fds = next((RingFds.from_arg(a) for a in argv[2:] if a.startswith("ring=")), None)
    ring = None
    if fds is not None:  # mapped (and its memfd closed) before the filter forbids closing the bells
        ring = RingClient(RingFds(fds.memfd, move_high(fds.host_bell, fd), [move_high(n, fd) for n in fds.bells]))
    if "unconfined" not in argv[2:]:
        _confine(fd, ring)
    Child(fd, host_pid, ring).serve()
