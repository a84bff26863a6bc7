import asyncio
import os
import signal


async def main():
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, "SIGUSR1")
    loop.call_later(0.2, os.kill, os.getpid(), signal.SIGUSR1)
    print("handled", await asyncio.wait_for(got, 30))
    loop.remove_signal_handler(signal.SIGUSR1)
asyncio.run(main())
try:
    signal.set_wakeup_fd(1000)
except OSError as e:
    print("bad fd:", e.errno)
