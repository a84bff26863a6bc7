import os
import signal


def handler(signum, frame):
    1 / 0
signal.signal(signal.SIGALRM, handler)
r, w = os.pipe()
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    while True:
        os.write(w, b"x" * 65536)  # the pipe fills, the write blocks, the alarm's handler raises
except ZeroDivisionError as exc:
    print("handler's exception:", type(exc).__name__)
