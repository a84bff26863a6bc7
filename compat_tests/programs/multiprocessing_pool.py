"""multiprocessing.Pool map. Outside the enclave subset: inside it must fail with OSError(ENOSYS)."""
import multiprocessing


def square(x):
    return x * x


if __name__ == "__main__":
    with multiprocessing.Pool(processes=2) as pool:
        print("map:", pool.map(square, range(10)))
        res = pool.apply_async(square, (12,))
        print("apply_async:", res.get(timeout=10))
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=q.put, args=("from child",))
    p.start()
    print("process queue:", q.get(timeout=10))
    p.join(10)
    print("child exit code:", p.exitcode)
