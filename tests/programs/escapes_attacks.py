import errno
import importlib.util
import os
import sys

secret = sys.argv[1]
results = []
def attack(fn):
    try:
        fn()
        results.append('ESCAPED')
    except OSError as exc:
        results.append(errno.errorcode.get(exc.errno, exc.errno))
def fresh(name):
    return importlib.util.module_from_spec(importlib.util.find_spec(name))
attack(lambda: fresh('posix').stat(secret))
attack(lambda: fresh('_io').open(secret).read())
import _io

fileio = [c for c in _io._RawIOBase.__subclasses__() if c.__module__ == '_io' and c.__name__ == 'FileIO'][0]
attack(lambda: fileio(secret).read())
import tempfile

attack(lambda: tempfile._TemporaryFileCloser(open(os.devnull), secret).close())
attack(lambda: fresh('_posixsubprocess').fork_exec(['sh'], [b'/bin/sh']))
attack(lambda: os.system('true'))
import gc

attack(lambda: gc.get_objects())
print(' '.join(map(str, results)))
