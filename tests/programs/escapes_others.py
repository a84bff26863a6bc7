import os
import resource

out = []
for call in (lambda: resource.prlimit(os.getppid(), resource.RLIMIT_CPU),
             lambda: os.setpriority(os.PRIO_PROCESS, os.getppid(), 0),
             lambda: os.sched_getaffinity(os.getppid()),
             lambda: os.kill(os.getppid(), 0),
             lambda: os.killpg(os.getpgid(0), 0),
             lambda: os.getgrouplist('root', 0)):
    try:
        call()
        out.append('ALLOWED')
    except OSError as exc:
        out.append(exc.errno)
print('ENOSYS' if set(out) == {38} else out)
print(os.getpid() != os.getppid())
