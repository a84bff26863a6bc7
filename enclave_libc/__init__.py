"""The trusted runtime: a POSIX subset implemented on ocalls.

Each family module (`files`, `dirs`, `io`, ...) implements Python's entry points on top of the ocall stubs, with
the same signatures, return types and exceptions as the real ones, and lists its replacements in `PATCHES`
(original function -> enclave function).  `posix_shim.interpose` installs them; nothing here patches anything.

PYTEST_DONT_REWRITE: the runtime is imported before a program inside the enclave starts pytest, and pytest
would warn that this installed plugin's package "cannot be rewritten" (an output the native run does not have).
"""
