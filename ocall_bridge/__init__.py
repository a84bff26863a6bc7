"""The boundary: the ocall table, the wire format, transports, the trusted client and the untrusted host.

Nothing in this package imports enclave_libc or posix_shim: imports only point down.
"""

from . import logs as _logs  # noqa: F401 - the runtime's warnings go to the host's stderr
