"""posix_shim: run unmodified POSIX-style Python programs inside an enclave.

Their file, socket and time calls become ocalls to an untrusted host, every answer is validated, and an
allowlist policy decides which part of POSIX exists and which host resources may be touched.

PYTEST_DONT_REWRITE: the runtime is imported before a program inside the enclave starts pytest, and pytest
would warn that this installed plugin's package "cannot be rewritten" (an output the native run does not have).
"""

from .enclave import Enclave, EnclaveCallError, EnclaveStateError, EnclaveUnavailable

__all__ = ["Enclave", "EnclaveCallError", "EnclaveStateError", "EnclaveUnavailable"]
__version__ = "0.1.0"
