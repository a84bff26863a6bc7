import gc
import os
import pickle
import warnings


class FakePath:
    def __init__(self, p): self.p = p
    def __fspath__(self): return self.p
def show(f, *a):
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            r = f(*a)
        print("ok", [str(x.message) for x in w], type(r).__name__)
    except Exception as e:
        print(type(e).__name__, e)
os.mkdir("dd")
os.mkdir("dd/x")
show(os.stat, bytearray(b"dd"))
show(os.listdir, memoryview(b"dd"))
show(lambda p: [e.name for e in os.scandir(p)], bytearray(b"dd"))
show(os.stat, FakePath(1))
show(os.stat, 1.5)
show(os.chdir, bytearray(b"dd"))
os.mkdir("y")
it = os.scandir(".")
show(pickle.dumps, next(it))
show(pickle.dumps, it)
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    del it
    gc.collect()
print([x.category.__name__ for x in w])
