"""logging with a RotatingFileHandler and a plain FileHandler, no timestamps in the format."""
import logging
import logging.handlers
import os

log = logging.getLogger("app")
log.setLevel(logging.DEBUG)
rot = logging.handlers.RotatingFileHandler("app.log", maxBytes=300, backupCount=3, encoding="utf-8")
rot.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
log.addHandler(rot)
errors = logging.FileHandler("errors.log", mode="w")
errors.setLevel(logging.ERROR)
errors.setFormatter(logging.Formatter("%(levelname)s %(funcName)s %(message)s"))
log.addHandler(errors)
child = log.getChild("db")


def work(i):
    if i % 7 == 6:
        try:
            raise ValueError(f"bad record {i}")
        except ValueError:
            log.exception("failed on %d", i)
    elif i % 3 == 0:
        child.warning("slow query #%d", i)
    else:
        log.info("processed record %03d", i)
        log.debug("details for %d", i)


for i in range(40):
    work(i)
rot.close()
errors.close()
log.removeHandler(rot)
log.removeHandler(errors)

files = sorted(f for f in os.listdir(".") if f.startswith("app.log"))
print("log files:", files)
for name in files:
    with open(name, encoding="utf-8") as f:
        lines = f.read().splitlines()
    print(f"{name}: {len(lines)} lines, {os.path.getsize(name)} bytes, first={lines[0]!r}")
with open("app.log.3") as f:
    print("oldest backup starts:", f.readline().rstrip())
with open("errors.log") as f:
    content = f.read().splitlines()
print("error log lines:", len(content))
print("error entries:", [line for line in content if line.startswith("ERROR")])
print("traceback recorded:", any("Traceback" in line for line in content))

logging.basicConfig(filename="basic.log", filemode="w", format="%(levelname)s|%(message)s", force=True)
logging.warning("via root %s", "logger")
logging.info("filtered out")
logging.shutdown()
with open("basic.log") as f:
    print("basic.log:", f.read().splitlines())
