"""Environment and process-local state set by the program itself; nothing read from the host environment."""
import os
import sys

NAME = "POSIX_SHIM_COMPAT_DEMO"
print("unset getenv is None:", os.getenv("POSIX_SHIM_SURELY_UNSET_VAR") is None)
print("getenv default:", os.getenv("POSIX_SHIM_SURELY_UNSET_VAR", "fallback"))
print("unset in environ:", "POSIX_SHIM_SURELY_UNSET_VAR" in os.environ)
try:
    os.environ["POSIX_SHIM_SURELY_UNSET_VAR"]
except KeyError:
    print("environ[] of unset: KeyError")

os.environ[NAME] = "hello world"
print("set then get:", os.environ[NAME], os.getenv(NAME))
print("bytes view:", os.environb[NAME.encode()])
os.environ[NAME] += "!"
print("update:", os.environ.get(NAME))
os.environ.setdefault(NAME, "ignored")
os.environ.setdefault(NAME + "_2", "second")
print("setdefault:", os.environ[NAME], os.environ[NAME + "_2"])
print("ours in listing:", sorted(k for k in os.environ if k.startswith(NAME)))
snapshot = os.environ.copy()
del os.environ[NAME]
print("after del:", os.getenv(NAME), NAME in snapshot)
os.environ.pop(NAME + "_2")
print("after pop:", NAME + "_2" in os.environ)
os.environ["EMPTY_" + NAME] = ""
print("empty value is set:", os.getenv("EMPTY_" + NAME) == "", "EMPTY_" + NAME in os.environ)
os.unsetenv("EMPTY_" + NAME)  # low level only; os.environ mapping is not updated by unsetenv
print("unsetenv leaves mapping:", "EMPTY_" + NAME in os.environ)
del os.environ["EMPTY_" + NAME]
try:
    os.environ["BAD=NAME"] = "x"
except ValueError:
    print("'=' in name: ValueError")

print("expandvars:", os.path.expandvars("$POSIX_SHIM_SURELY_UNSET_VAR/x"))
os.environ[NAME] = "/opt/demo"
print("expandvars set:", os.path.expandvars(f"${NAME}/bin:${{{NAME}}}/lib"))
del os.environ[NAME]

old = os.umask(0o027)
print("umask set/readback:", oct(os.umask(0o027)))
fd = os.open("umask_test.txt", os.O_CREAT | os.O_WRONLY, 0o666)
os.close(fd)
print("file mode under umask 027:", oct(os.stat("umask_test.txt").st_mode & 0o777))
os.umask(old)
os.mkdir("sub")
os.chdir("sub")
print("chdir relative:", os.path.basename(os.getcwd()), os.path.exists("../umask_test.txt"))
os.chdir("..")
print("pid positive:", os.getpid() > 0, "ppid int:", isinstance(os.getppid(), int))
print("platform:", os.name, sys.platform, os.sep, os.linesep == "\n")
print("argv length:", len(sys.argv), sys.argv[0].endswith("env_vars.py"))
print("uname sysname:", os.uname().sysname)
print("cpu_count positive:", (os.cpu_count() or 1) > 0)
