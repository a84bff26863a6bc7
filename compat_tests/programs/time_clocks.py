"""Clocks: monotonic never goes backwards, sleep sleeps long enough, wall clock is sane. Booleans only."""
import time

samples = [time.monotonic() for _ in range(2000)]
print("monotonic non-decreasing:", all(b >= a for a, b in zip(samples, samples[1:])))
ns = [time.monotonic_ns() for _ in range(2000)]
print("monotonic_ns non-decreasing:", all(b >= a for a, b in zip(ns, ns[1:])))
pc = [time.perf_counter() for _ in range(2000)]
print("perf_counter non-decreasing:", all(b >= a for a, b in zip(pc, pc[1:])))

for dur in (0.05, 0.01, 0.0):
    t0 = time.monotonic()
    p0 = time.perf_counter()
    time.sleep(dur)
    elapsed = time.monotonic() - t0
    print(f"sleep({dur}) long enough:", elapsed >= dur, time.perf_counter() - p0 >= dur, elapsed < dur + 1.0)

now = time.time()
print("wall clock after 2023:", now > 1_672_531_200)
print("time_ns agrees with time:", abs(time.time_ns() / 1e9 - now) < 1.0)
print("clock_gettime(REALTIME) agrees:", abs(time.clock_gettime(time.CLOCK_REALTIME) - now) < 1.0)
print("clock_gettime(MONOTONIC) agrees:", abs(time.clock_gettime(time.CLOCK_MONOTONIC) - time.monotonic()) < 1.0)
print("process_time non-negative:", time.process_time() >= 0)
print("thread_time non-negative:", time.thread_time() >= 0)

start = time.process_time()
x = 0
for i in range(200000):
    x += i
print("busy loop result:", x, "process_time advanced:", time.process_time() >= start)

gm = time.gmtime(0)
print("epoch:", time.strftime("%Y-%m-%d %H:%M:%S", gm), gm.tm_wday, gm.tm_yday)
print("calendar.timegm roundtrip:", __import__("calendar").timegm(time.gmtime(1700000000)) == 1700000000)
print("strptime:", time.strptime("2024-02-29 12:34:56", "%Y-%m-%d %H:%M:%S")[:6])
info = time.get_clock_info("monotonic")
print("monotonic info:", info.monotonic, info.adjustable)
deadline = time.monotonic() + 0.03
polls = 0
while time.monotonic() < deadline:
    time.sleep(0.005)
    polls += 1
print("deadline loop terminated:", 1 <= polls <= 7)
