"""The default policy at work: reading a host file outside the allowed folders.

Natively the program reads /etc/hostname (printing only whether it has a name in it). Inside the enclave the
default policy allows the Python installation, the system's shared libraries and public configuration, the
script's folder and the cwd, so the open() must fail with PermissionError (EACCES) whose message names the flag
that would allow it.
"""
print("opening /etc/hostname")
with open("/etc/hostname", encoding="utf-8", errors="replace") as f:
    name = f.read().strip()
print("has a host name:", bool(name))
