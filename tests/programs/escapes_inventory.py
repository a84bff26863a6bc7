import sys

from enclave_libc.closed import MODULES
from enclave_libc.closed import needs_serving as NEEDS

bad = []
for name in MODULES:
    module = sys.modules.get(name)
    if module is None:
        continue
    for attr, value in vars(module).items():
        if NEEDS(name, attr, value) and not getattr(value, '__posix_shim__', False) \
                and not getattr(value, '__posix_shim_refused__', False):
            bad.append(name + '.' + attr)
RESULT = bad
