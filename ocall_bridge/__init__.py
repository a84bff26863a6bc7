"""The boundary: the ocall table, the wire format, transports, the trusted client and the untrusted host.

Nothing in this package imports enclave_libc or posix_shim: imports only point down.

PYTEST_DONT_REWRITE: the runtime is imported before a program inside the enclave starts pytest, and pytest
would warn that this installed plugin's package "cannot be rewritten" (an output the native run does not have).
"""

from . import logs as _logs  # noqa: F401 - the runtime's warnings go to the host's stderr
