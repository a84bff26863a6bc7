"""A value whose class lies about itself never crosses the sim backend's lean route.

A subclass can make `__class__` a property that answers `bytes`, and override `__eq__`, `__hash__` and
`__contains__` so that every string test after it is fooled.  The frames never carried such an object: encoding
gives the host plain bytes, on which its policy checks cannot be fooled.  conform.py therefore judges a value by
`type()`, which reads the real type.  The attack below (found by a review of the lean route) read the platform
secret under `-A`; the negative control judges by `__class__` again and shows it succeed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import printed_in_sim

from ocall_bridge import conform, lies
from ocall_bridge.access import ALLOW_ALL
from ocall_bridge.wire import CODECS

ATTACK = '''
SECRET = {secret!r}

class Posing(bytes):
    @property
    def __class__(self):
        return bytes
    def __eq__(self, other):
        return False
    def __ne__(self, other):
        return True
    def __hash__(self):
        return 7
    def __contains__(self, item):
        return False
    def startswith(self, *a):
        return True
    def endswith(self, *a):
        return False

try:
    with open(Posing(SECRET), "rb") as f:
        print("READ", f.read().decode())
except OSError as exc:
    print("REFUSED", exc.errno)
'''


def _posing(value: Any) -> Any:
    """`value` as an instance of a subclass whose __class__ answers the base type (None for a type that has none)."""
    base = type(value)
    if base in (bool, type(None)):
        return None
    posing = type("Posing", (base,), {"__class__": property(lambda self: base)})
    return posing(value)


def _lenient(v: Any) -> type:
    return v.__class__  # what conform.py judged by before: a subclass can answer anything


def _conformers_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    for codec in CODECS.values():
        monkeypatch.setattr(codec, "_conformers", None)


def _vouched_posers() -> list[str]:
    """Every field of every row, honest values around one posing value: the rows whose conformer vouches for it."""
    vouched = []
    for codec in CODECS.values():
        for answer, fields in ((False, codec.call.params), (True, codec.call.results)):
            honest = [lies.well_formed(f.type) for f in fields]
            check = codec.conform_answer if answer else codec.conform_request
            for i, value in enumerate(honest):
                posing = _posing(value)
                if posing is None:
                    continue
                values = (*honest[:i], posing, *honest[i + 1:])
                if check(values) is not None:
                    vouched.append(f"{codec.call.name} {'answer' if answer else 'request'} field {i}")
    return vouched


def test_no_conformer_vouches_for_a_value_whose_class_lies() -> None:
    assert _vouched_posers() == []


def test_negative_control_judged_by_dunder_class_the_posers_are_vouched_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conform, "_type", _lenient)
    _conformers_reset(monkeypatch)
    assert len(_vouched_posers()) > 50


@pytest.fixture
def secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "platform-secret"
    path.write_text("TOPSECRET")
    monkeypatch.setenv("POSIX_SHIM_PLATFORM_SECRET", str(path))
    return path


def test_a_posing_path_does_not_reach_the_platform_secret(secret: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = printed_in_sim(ALLOW_ALL, ATTACK.format(secret=os.fsencode(secret)), capfd)
    assert out.split() == ["REFUSED", "13"]


def test_negative_control_with_lenient_conformers_the_secret_is_read(secret: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(conform, "_type", _lenient)
    _conformers_reset(monkeypatch)
    out = printed_in_sim(ALLOW_ALL, ATTACK.format(secret=os.fsencode(secret)), capfd)
    assert out.split() == ["READ", "TOPSECRET"]
