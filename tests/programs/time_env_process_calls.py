import errno
import multiprocessing
import os
import subprocess


def attempt(name, fn, *args):
    try:
        fn(*args)
    except OSError as exc:
        print(name, errno.errorcode[exc.errno], name.split(".")[0] in str(exc) or str(exc))
    else:
        print(name, "ran")
attempt("subprocess.run", subprocess.run, ["ls"])
attempt("subprocess.check_output", subprocess.check_output, ["ls"])
attempt("fork", os.fork)
attempt("system", os.system, "ls")
attempt("popen", os.popen, "ls")
attempt("execv", os.execv, "/bin/ls", ["ls"])
attempt("execvp", os.execvp, "ls", ["ls"])
attempt("spawnv", os.spawnv, os.P_WAIT, "/bin/ls", ["ls"])
attempt("posix_spawn", os.posix_spawn, "/bin/ls", ["ls"], {})
attempt("forkpty", os.forkpty)
attempt("setuid", os.setuid, os.getuid())
attempt("killpg", os.killpg, os.getpgrp(), 0)
attempt("multiprocessing", multiprocessing.get_context("fork").Process(target=print).start)
