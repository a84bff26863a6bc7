"""`python -m posix_shim.compat ...`: the same as `python -m posix_shim compat ...`."""

from .cli import main

raise SystemExit(main())
