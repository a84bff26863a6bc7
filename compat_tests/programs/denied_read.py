"""The default policy at work: reading a host file outside the allowed folders.

Natively the program reads /etc/passwd (printing only whether it looks like one). Inside the enclave the
default policy allows the Python installation, the script's folder and the cwd, so the open() must fail with
PermissionError (EACCES) whose message names the flag that would allow it.
"""
print("opening /etc/passwd")
with open("/etc/passwd", encoding="utf-8", errors="replace") as f:
    lines = f.read().splitlines()
print("looks like a passwd file:", any(line.startswith("root:") for line in lines))
