"""Where the runtime's own warnings go: the host's real stderr, never the program's.

Without a handler, logging's last-resort handler writes to `sys.stderr` - which inside an enclave is the
program's stream, itself served by ocalls: a host warning would appear in the program's output (and could
recurse through the boundary).  The "posix_shim" logger therefore gets one handler of its own that writes to
file descriptor 2 with the real `write`, captured before any interposition.  Applications that want these
records elsewhere can remove it (`logging.getLogger("posix_shim").handlers.clear()`) and attach their own.
"""

from __future__ import annotations

import logging
import posix

_write = posix.write


class HostStderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if not message.startswith("posix_shim"):
                message = f"posix_shim: {message}"
            line = f"{message}\n"
            data = line.encode("utf-8", "replace")
            while data:
                data = data[_write(2, data):]
        except Exception:  # a closed stderr must not turn a warning into a crash
            pass


def install() -> None:
    logger = logging.getLogger("posix_shim")
    if not any(isinstance(h, HostStderrHandler) for h in logger.handlers):
        logger.addHandler(HostStderrHandler(logging.WARNING))
        logger.propagate = False


install()
