"""posix_shim: run unmodified POSIX-style Python programs inside an enclave.

Their file, socket and time calls become ocalls to an untrusted host, every answer is validated, and an
allowlist policy decides which part of POSIX exists and which host resources may be touched.
"""

from .enclave import Enclave, EnclaveCallError, EnclaveStateError

__all__ = ["Enclave", "EnclaveCallError", "EnclaveStateError"]
__version__ = "0.1.0"
