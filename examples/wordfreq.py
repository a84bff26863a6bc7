"""A small ordinary program: count words in files, write a report, read it back.

Run it inside an enclave with `python -m posix_shim examples/wordfreq.py`.  Every file call it makes (open,
read, write, stat, listdir, rename) becomes an ocall to the host, checked by the default policy.
"""

import collections
import os
import re
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def count_words(paths):
    counts = collections.Counter()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                counts.update(w.lower() for w in re.findall(r"[A-Za-z']+", line))
    return counts


def main(argv):
    paths = argv or sorted(os.path.join(HERE, n) for n in os.listdir(HERE) if n.endswith(".py"))
    counts = count_words(paths)
    report_dir = tempfile.mkdtemp(prefix="wordfreq-", dir=os.getcwd())
    report = os.path.join(report_dir, "report.txt")
    with open(report + ".tmp", "w", encoding="utf-8") as out:
        for word, n in counts.most_common(10):
            out.write(f"{n:5d} {word}\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(report + ".tmp", report)
    with open(report, encoding="utf-8") as f:
        text = f.read()
    print(f"{len(paths)} files, {sum(counts.values())} words, {len(counts)} distinct; top 10:")
    print(text, end="")
    print(f"report: {os.path.relpath(report)} ({os.stat(report).st_size} bytes)")
    os.remove(report)
    os.rmdir(report_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
