import datetime
import threading
import time
import zoneinfo

t0, p0 = time.monotonic(), time.perf_counter()
time.sleep(0.2)
slept, measured = time.monotonic() - t0, time.perf_counter() - p0
print("slept at least 0.2 s:", 0.2 <= slept < 2, 0.2 <= measured < 2)
print("monotonic_ns agrees:", abs(time.monotonic_ns() / 1e9 - time.monotonic()) < 0.5)
moment = datetime.datetime(2024, 3, 31, 0, 30, tzinfo=datetime.UTC)
paris = zoneinfo.ZoneInfo("Europe/Paris")
for hours in (0, 1, 2):
    t = moment + datetime.timedelta(hours=hours)
    print(t.strftime("%Y-%m-%d %H:%M %Z"), "|", t.astimezone(paris).strftime("%Y-%m-%d %H:%M %Z %z"))
now = datetime.datetime.now(datetime.UTC)
print("now is now:", abs(now.timestamp() - time.time()) < 5,
      abs(datetime.datetime.now(paris).timestamp() - time.time()) < 5)
print("today:", datetime.date.today() == datetime.datetime.now().date() or "midnight")
event = threading.Event()
start = time.monotonic()
print("event wait:", event.wait(0.15), 0.15 <= time.monotonic() - start < 2)
threading.Timer(0.05, event.set).start()
print("event set by a timer:", event.wait(5))
print("clock_gettime:", time.clock_gettime(time.CLOCK_BOOTTIME) > 0, time.clock_gettime_ns(time.CLOCK_REALTIME) > 0)
print("gmtime:", time.gmtime(0)[:6], time.localtime().tm_year > 2000, len(time.ctime()) > 10)
