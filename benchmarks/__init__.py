"""What the enclave boundary costs: ratios against native Python, measured in the same run, on every backend.

Run `python -m benchmarks --help`; docs/performance.md has the method and the results on this machine.
"""
