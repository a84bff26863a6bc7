"""`python -m posix_shim compat`: the compatibility report - what runs, on which backend, and which POSIX exists.

The report is one Markdown document in three sections, each between `<!-- BEGIN compat:NAME -->` /
`<!-- END ... -->` markers so that a run regenerating some sections keeps the others of an existing file:

* **matrix** - every program of the corpus (compat_tests/programs, described by compat_tests/expectations.toml)
  run natively and then under each backend through the real command line, each run in a fresh empty scratch
  directory with a timeout, and judged against what the corpus promises (`corpus`).
* **support** - the POSIX support table: every public function of os, io, socket, select, selectors, time, signal
  and fcntl, and what the enclave does with it, from the ocall table, the interposition registry and the rows
  each replacement declares with `@uses(...)` (`support`).
* **cpython** - CPython's own regression tests for those modules, run natively and inside and compared test by
  test (`cpython`, whose in-process runner is `cpython_runner`); the results are kept in a file (`store`) and the
  section is rendered from it.

The report goes to stdout unless `--out FILE` names a file (`cli`); the repository's own docs/compat.md is
`python -m posix_shim compat --out docs/compat.md`.  One job per module, imported by name
(`posix_shim.compat.corpus` ...): this package's `__init__` imports nothing, so that `python -m posix_shim`
pays nothing for a subcommand it does not run.
"""
