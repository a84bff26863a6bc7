"""python -m posix_shim: see cli.py."""

import sys

from posix_shim.prestart import pause_gc, program_run, start_early

backend = program_run(sys.argv[1:])
if backend is not None:  # a program run: the start-up's objects are not walked by the collector (prestart.py)
    pause_gc()
if backend == "process":  # the enclave process starts now, while this process loads the rest
    start_early(sys.argv[1:])

from posix_shim.cli import main  # noqa: E402  (after the early start, on purpose)

sys.exit(main())
