"""`posix_shim policy check --json`: the policy as the plain data the process backend sends to its child.

The flag existed but called a function that was never written (found by mypy, issue 19): every use crashed with
an AttributeError traceback.  A user relies on the output being JSON that `policy.from_data` turns back into the
same rules, so that is what is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from posix_shim import policy


def test_check_json_prints_the_policy_as_data_the_child_rebuilds(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "secret").mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "posix_shim", "policy", "check", "--json",
                           f"--allow-read={data_dir}", f"--deny-read={data_dir / 'secret'}"],
                          cwd=tmp_path, capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    data = json.loads(done.stdout)
    assert [str(data_dir), "--allow-read"] in [[p, o.split("=")[0]] for p, o in data["read"]["allow"]]
    rebuilt = policy.from_data(data)
    assert rebuilt.check("open", "read", os.fsencode(data_dir / "notes.txt")) is None
    assert rebuilt.check("open", "read", os.fsencode(data_dir / "secret" / "key")) is not None
