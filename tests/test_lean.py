"""The sim backend's lean route (no frames) makes exactly the checks of the frame route.

* conform.py vouches for a value only when the frames would deliver it unchanged: for every row of the table,
  both sides, `conform(v)` equals `decode(encode(v))` with the very same types, and shares nothing mutable
  with `v`.  A conformer that lets a bytearray through fails the same comparison (the negative control).
* One stub call, two routes: every row is called through a frame-only client and a lean client, each over its own
  host whose functions answer the same results - honest ones and every well-formed lie of `lies.py` (an errno
  the call cannot return, a count over its bound, a stat without a file type, a handle given twice ...) - and
  with arguments that pass or fail the host's request checks and its policy.  The outcomes (results with their
  types, or exception, errno and message) must be identical.  With a lean route that skips the host's checks,
  the same comparison finds differences (the negative control).
* The lean route steps aside for every hook (`before`, a wrapped `perform` or `serve`): wire-level lies (a
  truncated or garbled answer, another sequence number) still reach the enclave as frames and are refused.
* stat/lstat by plain path (nothing confined) answer what the O_PATH descriptor route answers, on every kind of
  path; a confining policy keeps the descriptor route.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fuzz import _sample

from ocall_bridge import lies
from ocall_bridge import types as T
from ocall_bridge.access import Access
from ocall_bridge.client import OcallClient
from ocall_bridge.conform import conformer
from ocall_bridge.errors import HostViolation
from ocall_bridge.host import confine, files
from ocall_bridge.host.runtime import Host
from ocall_bridge.transport import SimTransport
from ocall_bridge.validate import Plausibility
from ocall_bridge.wire import CODECS, CODECS_BY_NAME, WireError, decode_answer, decode_request


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same type at every level (a list is not a tuple, a bytearray is not bytes)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (a != a and b != b)  # NaN is carried as NaN


def _mutables(v: Any) -> set[int]:
    """The ids of every mutable object within v."""
    found: set[int] = set()
    if isinstance(v, list | bytearray | memoryview | dict | set):
        found.add(id(v))
    if isinstance(v, list | tuple):
        for x in v:
            found |= _mutables(x)
    return found


def _odd(t: T.WireType, rnd: random.Random) -> Any:
    """A value a careless caller or host might hand over: of a near type, out of range, or malformed."""
    good = _sample(t, rnd)
    choices: list[Any] = [True, 1.0, None, -1, 1 << 64, -(1 << 63) - 1, "x", b"\0", bytearray(b"ab"),
                          memoryview(b"ab"), [], (), [good], (good,)]
    if isinstance(good, bytes):
        choices += [bytearray(good), good + b"\0", b"x" * (getattr(t, "max", 0) + 1)]
    if isinstance(good, str):
        choices += [good + "\0", "\udc80", "é" * (getattr(t, "max", 0) // 2 + 1)]
    if isinstance(good, tuple):
        choices += [list(good), good[:-1], (*good, 0)]
    if isinstance(good, list):
        choices += [tuple(good), [list(x) for x in good] or [[]]]
    if isinstance(good, int) and not isinstance(good, bool):
        choices += [good + (1 << 32), -good - 1, 1 << 31, 1 << 32, 1 << 63]
    return rnd.choice(choices)


def _values(fields: tuple[T.Field, ...], rnd: random.Random) -> tuple:
    values = [_sample(f.type, rnd) for f in fields]
    if fields and rnd.random() < 0.5:
        i = rnd.randrange(len(fields))
        values[i] = _odd(fields[i].type, rnd)
    if rnd.random() < 0.05:
        values.append(0)
    return tuple(values)


def _through_frames(codec: Any, values: tuple, answer: bool) -> tuple | None:
    """What the other side decodes from `values` sent as a frame; None when a frame cannot carry them."""
    try:
        if answer:
            err, results = decode_answer(codec.pack_answer(7, values), codec, 7)
            assert err == 0
            return results
        _, _, args = decode_request(codec.pack_request(7, values))
        return args
    except WireError:
        return None


def _conform_mismatches(conform_of: Callable[[Any, bool], Callable[[Any], Any]], examples: int) -> list[str]:
    rnd = random.Random(17)
    problems = []
    for codec in CODECS.values():
        for answer in (False, True):
            conform = conform_of(codec, answer)
            fields = codec.call.results if answer else codec.call.params
            for _ in range(examples):
                values = _values(fields, rnd)
                vouched = conform(values)
                if vouched is None:
                    continue  # the frames are used: nothing to prove
                carried = _through_frames(codec, values, answer)
                if carried is None or not _same(vouched, carried):
                    problems.append(f"{codec.call.name} {'answer' if answer else 'request'}: {values!r:.120} "
                                    f"vouched as {vouched!r:.120}, the frames give {carried!r:.120}")
                elif _mutables(vouched) & _mutables(values):
                    problems.append(f"{codec.call.name}: {values!r:.120} shares a mutable object")
    return problems


def test_conform_vouches_only_for_what_the_frames_carry_unchanged() -> None:
    def real(codec: Any, answer: bool) -> Callable[[Any], Any]:
        return codec.conform_answer if answer else codec.conform_request

    assert _conform_mismatches(real, 60) == []
    # Honest values are vouched for wherever the frames carry them (no row is frames-only by accident).
    for codec in CODECS.values():
        for answer, fields in ((False, codec.call.params), (True, codec.call.results)):
            honest = tuple(lies.well_formed(f.type) for f in fields)
            if _through_frames(codec, honest, answer) is not None:
                assert real(codec, answer)(honest) is not None, codec.call.name


def test_a_conformer_that_lets_a_bytearray_through_is_caught() -> None:
    """Negative control: the comparison above fails for a conformer one check looser than the real one."""

    def loose(codec: Any, answer: bool) -> Callable[[Any], Any]:
        real = codec.conform_answer if answer else codec.conform_request
        fields = codec.call.results if answer else codec.call.params
        bytes_at = [i for i, f in enumerate(fields) if isinstance(f.type, T.Bytes)]

        def conform(values: Any) -> Any:
            if isinstance(values, tuple) and len(values) == len(fields):
                swapped = tuple(bytes(v) if i in bytes_at and isinstance(v, bytearray) else v
                                for i, v in enumerate(values))
                if real(swapped) is not None:
                    return values  # the bytearray itself, as a careless lean route would pass it on
            return real(values)

        return conform

    problems = _conform_mismatches(loose, 60)
    assert problems and all("vouched" in p or "mutable" in p for p in problems)


# -- one call, two routes ------------------------------------------------------------------------------------

class Policy(Access):
    """Denies a few things, so that the host's own policy checks answer ENOSYS and EACCES."""

    def call_allowed(self, name: str) -> bool:
        return name not in ("rmdir", "getdents")

    def check(self, call: str, kind: str, resource: Any) -> str | None:
        if isinstance(resource, bytes) and b"c" in resource and kind != "read":
            return "no c here"
        return super().check(call, kind, resource)


def _answers(codec: Any, args: tuple, honest: tuple) -> list[tuple[str, Any]]:
    """(label, what the host function does) for the honest results and every well-formed lie about them."""
    out: list[tuple[str, Any]] = [("honest", honest)]
    frame = codec.pack_answer(5, honest)
    # Lies are told about the answer to well-formed arguments (`args` may be ones the host refuses).
    honest_args = args if codec.conform_request(args) is not None else \
        tuple(lies.well_formed(f.type) for f in codec.call.params)
    for kind in lies.KINDS:
        if kind in ("replay", "swap") or not lies.applies(kind, codec.call):
            continue  # (replay and swap tell an earlier or another call's answer: test_lies.py)
        told = lies.tell(kind, codec, honest_args, frame, issued=(1, 2), memory={})
        if told is None:
            continue
        try:
            err, results = decode_answer(told, codec, 5)
        except WireError:
            continue  # a wire-level lie: frames only (test_wire_level_lies_still_arrive_as_frames)
        out.append((kind, OSError(err, "told") if err else results))
    return out


def _host_fn(codec: Any, answer: Any) -> Callable[..., Any]:
    single = codec.nresults == 1

    def fn(host: Host, *args: Any) -> Any:
        if isinstance(answer, OSError):
            raise answer
        if single:
            return answer[0]
        return answer if codec.nresults else None

    return fn


def _outcome(stub: Callable[..., Any], args: tuple) -> tuple:
    try:
        result = stub(*args)
    except OSError as exc:
        message = str(exc)
        if stub.__name__ in Plausibility.TIMED:  # the enclave's own counter reads another value on each route
            message = re.sub(r"[0-9.]+", "N", message)
        return ("raised", type(exc).__name__, exc.errno, message)
    except OverflowError as exc:
        return ("raised", "OverflowError", None, str(exc))
    return ("answered", result)


def _pair(sabotage: Callable[[Host], None] | None, taken: list[int]) -> tuple[tuple[Host, OcallClient],
                                                                              tuple[Host, OcallClient]]:
    made = []
    for lean in (False, True):
        host = Host(Policy())
        for entry in host.entries.values():
            entry.fn_into = None
        if lean and sabotage is not None:
            sabotage(host)
        if lean:
            for entry in host.entries.values():
                if entry.lean is not None:
                    def counted(args: tuple, seq: int, route: Any = entry.lean) -> Any:
                        answer = route(args, seq)
                        taken[answer is None] += 1
                        return answer

                    entry.lean = counted
        made.append((host, OcallClient(SimTransport(host, lean=lean))))
    return made[0], made[1]


def _route_differences(sabotage: Callable[[Host], None] | None = None, examples: int = 6) -> list[str]:
    rnd = random.Random(29)
    logging.getLogger("posix_shim.host").disabled = True
    logging.getLogger("posix_shim.enclave").disabled = True
    try:
        taken = [0, 0]  # answered without frames, sent back to the frames
        (fhost, fclient), (lhost, lclient) = _pair(sabotage, taken)
        differences = []
        for codec in CODECS.values():
            entry = lhost.entries[codec.number]
            if entry.lean is None:
                continue
            name = codec.call.name
            for n in range(examples):
                handles = [h.handles.add(os.dup(0), "file") for h in (fhost, lhost)]
                assert handles[0] == handles[1]
                args = list(_values(codec.call.params, rnd) if n else
                            tuple(lies.well_formed(f.type) for f in codec.call.params))
                for i in entry.checks.handles:
                    if rnd.random() < 0.8:
                        args[i] = handles[0]
                honest = tuple(lies.well_formed(f.type) for f in codec.call.results)
                for label, answer in _answers(codec, tuple(args), honest):
                    for h in (fhost, lhost):
                        h.entries[codec.number].fn = _host_fn(codec, answer)
                    seen = [_outcome(getattr(c.stubs, name), tuple(args)) for c in (fclient, lclient)]
                    if not (seen[0][0] == seen[1][0] and (_same(seen[0][1], seen[1][1]) if seen[0][0] == "answered"
                                                          else seen[0] == seen[1])):
                        differences.append(f"{name} {label} {args!r:.100}: frames {seen[0]!r:.120}, "
                                           f"lean {seen[1]!r:.120}")
        assert taken[0] > 100 * examples, taken  # the comparison compared something: conforming calls went lean
        return differences
    finally:
        logging.getLogger("posix_shim.host").disabled = False
        logging.getLogger("posix_shim.enclave").disabled = False


def test_both_routes_give_the_same_outcome_for_every_row_and_every_lie() -> None:
    assert _route_differences() == []


def test_a_lean_route_that_skips_the_host_checks_is_caught() -> None:
    """Negative control: a lean route that calls the host function without the request checks, the handle table
    and the policy (what a hand-written fast path might do) answers differently, and the comparison says so."""

    def skip_checks(host: Host) -> None:
        for entry in host.entries.values():
            if entry.lean is None:
                continue
            codec = entry.codec

            def unchecked(args: tuple, seq: int, entry: Any = entry, codec: Any = codec) -> Any:
                result = entry.fn(host, *args)
                return codec.conform_answer((result,) if codec.nresults == 1 else result or ())

            entry.lean = unchecked

    differences = _route_differences(skip_checks, examples=3)
    assert any("frames ('raised'" in d and "lean ('answered'" in d for d in differences)


def test_the_lean_route_is_taken_and_steps_aside_for_every_hook(tmp_path: Path) -> None:
    host = Host()
    served: list[int] = []
    serve = host.serve

    def counting(frame: Any) -> Any:  # a wrapped serve in the instance: the lean route must step aside
        served.append(1)
        return serve(frame)

    path = os.fsencode(str(tmp_path))
    client = OcallClient(SimTransport(host))
    assert client.stubs.stat(path)[1] == os.stat(path).st_ino  # the lean route, unwatched: no frame served
    host.serve = counting  # type: ignore[method-assign]
    assert client.stubs.stat(path)[1] == os.stat(path).st_ino
    assert served == [1]
    del host.serve
    assert client.stubs.stat(path)[1] == os.stat(path).st_ino
    assert served == [1]
    entry = host.entries[CODECS_BY_NAME["stat"].number]
    assert entry.lean is not None and entry.lean((path,), 1)[0][1] == os.stat(path).st_ino
    host.before.append(lambda entry, args: None)
    assert entry.lean((path,), 1) is None  # a hook watches: frames
    host.before.clear()
    host.perform = host.perform  # type: ignore[method-assign]  # as wiring's tracer does
    assert entry.lean((path,), 1) is None
    del host.perform
    assert OcallClient(SimTransport(host, lean=False)).transport.lean(entry.codec.number) is None  # type: ignore


@pytest.mark.parametrize("kind", ["truncated", "garbage", "hugelen", "seq", "call"])
def test_wire_level_lies_still_arrive_as_frames(kind: str, tmp_path: Path) -> None:
    """A host that lies on the wire wraps `serve` (inject.Injector.wrap_serve): the lean route steps aside and the
    lie is refused as a malformed answer, as on the frame route."""
    host = Host()
    serve = host.serve
    codec = CODECS_BY_NAME["stat"]

    def lying(frame: Any) -> Any:
        answer = serve(frame)
        return lies.tell(kind, codec, (), answer) or answer

    host.serve = lying  # type: ignore[method-assign]
    client = OcallClient(SimTransport(host))
    logging.getLogger("posix_shim.enclave").disabled = True
    try:
        with pytest.raises(HostViolation) as caught:
            client.stubs.stat(os.fsencode(str(tmp_path)))
    finally:
        logging.getLogger("posix_shim.enclave").disabled = False
    assert caught.value.errno == errno.EIO
    assert "malformed answer" in str(caught.value) or "answer for" in str(caught.value)


def test_no_answer_aliases_what_the_host_keeps(tmp_path: Path) -> None:
    """A host function returning a list it keeps (a listing page) hands the enclave a copy: the host changing
    its list afterwards changes nothing the enclave holds."""
    host = Host()
    kept = [(b"a", 1, 8)]
    codec = CODECS_BY_NAME["getdents"]
    host.entries[codec.number].fn = lambda host, *args: (kept, False) if codec.nresults == 2 else kept
    client = OcallClient(SimTransport(host))
    handle = host.handles.add(os.dup(0), "file")
    args = tuple(handle if i in host.entries[codec.number].checks.handles else lies.well_formed(f.type)
                 for i, f in enumerate(codec.call.params))
    try:
        got = client.stubs.getdents(*args)
    except OSError:
        pytest.skip("getdents's honest sample is refused by its checks")
    page = got[0] if isinstance(got, tuple) else got
    assert page is not kept
    kept.append((b"b", 2, 8))
    assert len(page) == 1


# -- stat by path ----------------------------------------------------------------------------------------------

def _paths(tmp_path: Path) -> list[bytes]:
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "d").mkdir()
    (tmp_path / "to_f").symlink_to("f")
    (tmp_path / "to_d").symlink_to("d")
    (tmp_path / "dangling").symlink_to("nothing")
    (tmp_path / "loop").symlink_to("loop")
    names = ["f", "d", "to_f", "to_d", "dangling", "loop", "f/", "d/", "to_d/", "to_f/", "missing", "f/x",
             "to_d/..", "d/../f", "dangling/", "loop/"]
    return [os.fsencode(str(tmp_path / n)) + (b"/" if n.endswith("/") else b"") for n in names]


@pytest.mark.parametrize("name", ["stat", "lstat"])
def test_stat_by_path_answers_what_the_descriptor_route_answers(name: str, tmp_path: Path) -> None:
    host = Host()
    entry = host.entries[CODECS_BY_NAME[name].number]
    fn = getattr(files, name)
    assert fn.by_path is True and entry.fn is fn

    def pinned(host: Host, t: confine.Target) -> Any:  # no by_path: run_resolved opens the O_PATH descriptor
        assert t.fd >= 0
        return fn(host, t)

    def outcome(f: Any, path: bytes) -> Any:
        try:
            return confine.run_resolved(host.access, entry.paths, f, host, (path,))
        except OSError as exc:
            return exc.errno

    for path in _paths(tmp_path):
        assert outcome(fn, path) == outcome(pinned, path), path


def test_a_confining_policy_keeps_the_descriptor_route(tmp_path: Path) -> None:
    class Confined(Access):
        def roots(self, kind: str) -> tuple[bytes, ...] | None:
            return (os.fsencode(str(tmp_path)),)

    (tmp_path / "f").write_bytes(b"x")
    seen: list[int] = []

    def spy(host: Host, t: confine.Target) -> Any:
        seen.append(t.fd)
        return files.stat(host, t)

    spy.by_path = True  # type: ignore[attr-defined]
    host = Host(Confined())
    entry = host.entries[CODECS_BY_NAME["stat"].number]
    confine.run_resolved(host.access, entry.paths, spy, host, (os.fsencode(str(tmp_path / "f")),))
    assert seen and seen[0] >= 0
    unconfined = Host()
    confine.run_resolved(unconfined.access, entry.paths, spy, unconfined, (os.fsencode(str(tmp_path / "f")),))
    assert seen[1] == -1


def test_every_row_has_a_conformer() -> None:
    for codec in CODECS.values():
        for fields in (codec.call.params, codec.call.results):
            conform = conformer(fields)
            assert conform(tuple(lies.well_formed(f.type) for f in fields)) is not None or \
                any(isinstance(f.type, T.Text) for f in fields), codec.call.name


def test_the_quick_platform_secret_test_never_clears_a_path_that_names_it(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """access.Access.check skips normalizing a path without the secret's last name in it (platform.clear_of):
    every spelling of the secret (dots, doubled slashes, .. detours, a trailing slash) is still refused."""
    from ocall_bridge import platform
    from ocall_bridge.access import ALLOW_ALL, normalized

    secret = tmp_path / "state" / "platform-secret"
    monkeypatch.setenv(platform.ENV, str(secret))
    base = os.fsencode(str(tmp_path))
    rnd = random.Random(5)
    parts = [b"state", b"platform-secret", b".", b"..", b"", b"x", b"platform-secre", b"tplatform-secret"]
    spellings = [os.fsencode(str(secret)), base + b"//state/./platform-secret", base + b"/x/../state/platform-secret/",
                 base + b"/state", base + b"/state/", base + b"/./state/.", b"/"]
    spellings += [base + b"/" + b"/".join(rnd.choice(parts) for _ in range(rnd.randint(1, 5))) for _ in range(400)]
    refused = 0
    for path in spellings:
        for kind in ("read", "write", "stat"):
            truth = platform.forbidden(normalized(path), kind)
            assert not (truth and platform.clear_of(path, kind)), (path, kind)
            assert (ALLOW_ALL.check("x", kind, path) is not None) == truth, (path, kind)
            refused += truth
    assert refused > 10
