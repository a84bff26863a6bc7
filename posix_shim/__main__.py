"""python -m posix_shim: see cli.py."""

import sys

from posix_shim.cli import main

sys.exit(main())
