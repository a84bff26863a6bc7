"""threading: producer/consumer with Queue, Event and Condition with timeouts, Lock, Barrier, Timer."""
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 5.0
tasks = queue.Queue(maxsize=4)
results = queue.Queue()
stop = threading.Event()


def worker(wid):
    while not stop.is_set():
        try:
            n = tasks.get(timeout=0.02)
        except queue.Empty:
            continue
        results.put((n, n * n, wid))
        tasks.task_done()


workers = [threading.Thread(target=worker, args=(i,), name=f"w{i}", daemon=True) for i in range(3)]
for t in workers:
    t.start()
for n in range(20):
    tasks.put(n, timeout=TIMEOUT)
tasks.join()
stop.set()
for t in workers:
    t.join(TIMEOUT)
print("workers still alive:", [t.is_alive() for t in workers])
out = []
while not results.empty():
    out.append(results.get_nowait())
print("squares:", [sq for _, sq in sorted((n, sq) for n, sq, _ in out)])
print("all workers valid:", all(w in (0, 1, 2) for _, _, w in out))

ev = threading.Event()
print("wait before set:", ev.wait(timeout=0.05))
timer = threading.Timer(0.02, ev.set)
timer.start()
print("wait with timer:", ev.wait(timeout=TIMEOUT))
timer.join(TIMEOUT)

try:
    queue.Queue().get(timeout=0.02)
except queue.Empty:
    print("empty queue get timed out")
full = queue.Queue(maxsize=1)
full.put(1)
try:
    full.put(2, timeout=0.02)
except queue.Full:
    print("full queue put timed out")

counter = 0
lock = threading.Lock()


def bump():
    global counter
    for _ in range(10000):
        with lock:
            counter += 1


ts = [threading.Thread(target=bump) for _ in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join(TIMEOUT)
print("locked counter:", counter)

cond = threading.Condition()
barrier = threading.Barrier(3, timeout=TIMEOUT)
order = []
with cond:
    print("condition wait timeout:", cond.wait(timeout=0.02))


def meet():
    idx = barrier.wait()
    with cond:
        order.append(idx)
        cond.notify_all()


ts = [threading.Thread(target=meet) for _ in range(3)]
for t in ts:
    t.start()
with cond:
    print("condition wait_for:", cond.wait_for(lambda: len(order) == 3, timeout=TIMEOUT))
for t in ts:
    t.join(TIMEOUT)
print("barrier indices:", sorted(order))
with ThreadPoolExecutor(max_workers=4) as ex:
    print("pool map:", list(ex.map(lambda x: x * 3, range(8), timeout=TIMEOUT)))
print("active threads back to main only:", threading.active_count() == 1)
