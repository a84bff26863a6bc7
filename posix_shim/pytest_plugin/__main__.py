"""`python -m posix_shim.pytest_plugin SPEC -- PYTEST-ARGS`: the host of an --enclave=process session."""

import sys

from .process_session import main

sys.exit(main(sys.argv[1:]))
