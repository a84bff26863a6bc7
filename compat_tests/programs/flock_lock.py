"""fcntl.flock advisory locks on a lock file in the cwd (a pidfile-style single-instance guard)."""
import fcntl
import os

LOCK = "app.lock"
holder = open(LOCK, "w")
fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
holder.write("locked\n")
holder.flush()
print("exclusive lock acquired")

# flock locks belong to the open file description, so a second open() conflicts even in one process
other = open(LOCK, "r")
try:
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("second lock: acquired (unexpected)")
except BlockingIOError as e:
    print("second exclusive lock refused:", type(e).__name__)
try:
    fcntl.flock(other.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
except BlockingIOError:
    print("shared lock refused while exclusive held")

fcntl.flock(holder, fcntl.LOCK_UN)
fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
third = open(LOCK, "r")
fcntl.flock(third, fcntl.LOCK_SH | fcntl.LOCK_NB)
print("two shared locks coexist")
try:
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("exclusive refused while shared held")
third.close()  # closing releases its lock
fcntl.flock(other, fcntl.LOCK_UN)
fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("exclusive re-acquired after release")
holder.close()
other.close()
with open(LOCK) as f:
    print("lock file content:", f.read().strip())

fd = os.open(LOCK, os.O_RDONLY)
print("F_GETFD cloexec:", bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC))
os.close(fd)
os.remove(LOCK)
