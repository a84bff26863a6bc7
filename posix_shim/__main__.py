"""python -m posix_shim: see cli.py."""

import sys

from posix_shim.prestart import start_early

# The enclave process of a process-backend run starts now, while this process loads the rest (prestart.py).
start_early(sys.argv[1:])

from posix_shim.cli import main  # noqa: E402  (after the early start, on purpose)

sys.exit(main())
