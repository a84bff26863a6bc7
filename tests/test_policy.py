"""The allowlist policy: decisions, file format and flags, kernel confinement on the host, learn mode, tripwires."""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_shim

from ocall_bridge.calls import BY_NAME
from ocall_bridge.host import confine
from ocall_bridge.host import files as hf
from ocall_bridge.host.runtime import Host
from posix_shim import policy
from posix_shim.policy import PolicyError

AF_INET, AF_INET6, AF_UNIX = socket.AF_INET, socket.AF_INET6, socket.AF_UNIX


def build(flags: list[str] = (), cwd: Path | str | None = None, kind: str | None = "code",
          target: str | None = None) -> policy.Policy:
    parser = argparse.ArgumentParser()
    policy.add_arguments(parser)
    return policy.build(parser.parse_args(list(flags)), kind, target, cwd=str(cwd) if cwd else None)


def run_check(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -m posix_shim policy check ...` (a subcommand: no --backend in front)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "posix_shim", "policy", "check", *args], cwd=cwd,
                          capture_output=True, env=env, timeout=60)


def addr(host: str, port: int, family: int = AF_INET) -> tuple:
    return (family, host, port, 0, 0, b"")


# ------------------------------------------------------------------------------------------------------------
# Decisions (the Access interface both sides ask)
# ------------------------------------------------------------------------------------------------------------

def test_default_denies_etc_hostname_and_the_flag_allows_it(tmp_path: Path) -> None:
    p = build(cwd=tmp_path)
    assert p.check("open", "read", b"/etc/hostname") == \
        "no read access to /etc/hostname (allow with --allow-read=/etc/hostname)"
    assert p.check("open", "read", b"/etc/../etc/hostname") is not None  # judged on the normalized path
    assert build(["--allow-read=/etc/hostname"], cwd=tmp_path).check("open", "read", b"/etc/hostname") is None
    # One file granted is not its folder.
    assert build(["--allow-read=/etc/hostname"], cwd=tmp_path).check("open", "read", b"/etc/shadow") is not None


def test_default_grants_cwd_install_and_script_folder(tmp_path: Path) -> None:
    script_dir = tmp_path / "app"
    script_dir.mkdir()
    cwd = tmp_path / "work"
    cwd.mkdir()
    p = build(cwd=cwd, kind="path", target=str(script_dir / "main.py"))
    assert p.check("open", "read", os.fsencode(cwd / "data.txt")) is None
    assert p.check("open", "write", os.fsencode(cwd / "out" / "x")) is None
    assert p.check("open", "read", os.fsencode(script_dir / "helper.py")) is None
    assert p.check("open", "write", os.fsencode(script_dir / "helper.py")) is not None  # read only
    assert p.check("open", "read", os.fsencode(os.__file__)) is None
    assert p.check("open", "write", os.fsencode(os.__file__)) is not None
    assert p.check("open", "read", os.fsencode(tmp_path / "other")) is not None
    # A prefix that is not a path component is not covered: /x/work does not grant /x/workshop.
    assert p.check("open", "read", os.fsencode(str(cwd) + "shop/f")) is not None


def test_stat_is_read_and_ancestors_of_grants(tmp_path: Path) -> None:
    p = build(cwd=tmp_path / "a" / "b")
    assert p.check("stat", "stat", os.fsencode(tmp_path / "a")) is None  # on the way to the cwd
    assert p.check("stat", "stat", b"/") is None
    assert p.check("stat", "stat", os.fsencode(tmp_path / "a" / "sibling")) is not None
    assert p.check("stat", "stat", b"/etc/hostname").startswith("no read access to /etc/hostname")


def test_deny_wins_over_every_grant(tmp_path: Path) -> None:
    p = build(["-A", "--deny-read=/etc/shadow", "--deny-net=127.0.0.1:22"], cwd=tmp_path)
    assert p.check("open", "read", b"/etc/passwd") is None
    assert p.check("open", "read", b"/etc/shadow") == "read access to /etc/shadow is denied by --deny-read=/etc/shadow"
    assert p.check("connect", "connect", addr("127.0.0.1", 80)) is None
    assert "denied by --deny-net=127.0.0.1:22" in p.check("connect", "connect", addr("127.0.0.1", 22))
    p = build([f"--deny-write={tmp_path}/keep"], cwd=tmp_path)
    assert p.check("open", "write", os.fsencode(tmp_path / "keep" / "x")) is not None
    assert p.check("open", "write", os.fsencode(tmp_path / "other")) is None


def test_network_rules(tmp_path: Path) -> None:
    p = build(cwd=tmp_path)
    assert p.check("connect", "connect", addr("127.0.0.1", 8080)) == \
        "no permission to connect to 127.0.0.1:8080 (allow with --allow-net=127.0.0.1:8080)"
    p = build(["--allow-net=127.0.0.1:8000-8100,[::1]:443,10.1.*.*:*,localhost:9000"], cwd=tmp_path)
    ok = [addr("127.0.0.1", 8000), addr("127.0.0.1", 8100), addr("::1", 443, AF_INET6), addr("10.1.200.3", 1),
          addr("::ffff:127.0.0.1", 8050, AF_INET6), addr("127.0.0.1", 9000), addr("::1", 9000, AF_INET6)]
    for a in ok:
        assert p.check("connect", "connect", a) is None, a
        assert p.check("bind", "bind", a) is None, a
    for a in (addr("127.0.0.1", 8101), addr("127.0.0.2", 8000), addr("::1", 80, AF_INET6), addr("10.2.0.1", 1)):
        assert p.check("connect", "connect", a) is not None, a
    assert build(["--allow-net"], cwd=tmp_path).check("connect", "connect", addr("192.0.2.1", 1)) is None
    # Port 0 (let the kernel choose) is a port like any other.
    assert build(["--allow-net=127.0.0.1:8000"], cwd=tmp_path).check("bind", "bind", addr("127.0.0.1", 0))
    assert build(["--allow-net=127.0.0.1"], cwd=tmp_path).check("bind", "bind", addr("127.0.0.1", 0)) is None


def test_unix_socket_paths_are_files(tmp_path: Path) -> None:
    p = build(cwd=tmp_path)
    assert p.check("bind", "bind", (AF_UNIX, "", 0, 0, 0, os.fsencode(tmp_path / "s.sock"))) is None
    assert "no write access to /run/x.sock" in p.check("connect", "connect", (AF_UNIX, "", 0, 0, 0, b"/run/x.sock"))
    assert "abstract" in p.check("bind", "bind", (AF_UNIX, "", 0, 0, 0, b"\0name"))


def test_environment_rules(tmp_path: Path) -> None:
    p = build(cwd=tmp_path)
    assert p.env_allowed("LANG") and p.env_allowed("LC_ALL") and p.env_allowed("TZ")
    assert not p.env_allowed("HOME") and not p.env_allowed("PATH") and not p.env_allowed("AWS_SECRET_ACCESS_KEY")
    p = build(["--allow-env=HOME,MYAPP_*", "--deny-env=MYAPP_TOKEN"], cwd=tmp_path)
    assert p.env_allowed("HOME") and p.env_allowed("MYAPP_MODE") and not p.env_allowed("MYAPP_TOKEN")
    assert build(["--allow-env"], cwd=tmp_path).env_allowed("ANYTHING")


def test_calls_families_and_single_calls(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('[calls]\nfamilies = ["files", "time"]\nallow = ["socketpair"]\ndeny = ["symlink"]\n')
    p = build(["--policy", str(f)], cwd=tmp_path)
    assert p.call_allowed("open") and p.call_allowed("clock_gettime") and p.call_allowed("socketpair")
    assert not p.call_allowed("symlink") and not p.call_allowed("connect")
    assert p.call_allowed("attach")  # the handshake is never optional


def test_data_round_trip_is_json_and_decides_the_same(tmp_path: Path) -> None:
    p = build(["--allow-read=/etc/passwd", "--deny-read=/etc/passwd/x", "--allow-net=127.0.0.1:80",
               "--allow-env=HOME"], cwd=tmp_path)
    q = policy.from_data(json.loads(json.dumps(p.to_data())))
    probes = [("read", b"/etc/passwd"), ("read", b"/etc/shadow"), ("write", os.fsencode(tmp_path / "f")),
              ("stat", b"/etc"), ("connect", addr("127.0.0.1", 80)), ("connect", addr("127.0.0.1", 81))]
    for kind, resource in probes:
        assert q.check("x", kind, resource) == p.check("x", kind, resource)
    assert q.env_allowed("HOME") and not q.env_allowed("USER")
    assert q.roots("read") == p.roots("read")
    assert policy.from_data({"allow_all": True}).check("open", "read", b"/etc/shadow") is None


# ------------------------------------------------------------------------------------------------------------
# The file format and its errors
# ------------------------------------------------------------------------------------------------------------

def test_policy_file_grants_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    f = tmp_path / "conf" / "policy.toml"
    f.write_text('[read]\nallow = ["../data"]\n[net]\nconnect = ["127.0.0.1:5432"]\n[env]\nset = {MODE = "x"}\n')
    p = build(["--policy", str(f)], cwd=tmp_path / "conf")
    assert p.check("open", "read", os.fsencode(tmp_path / "data" / "a.csv")) is None
    assert p.check("connect", "connect", addr("127.0.0.1", 5432)) is None
    assert p.check("bind", "bind", addr("127.0.0.1", 5432)) is not None  # connect only
    assert p.env_values() == {"MODE": "x"}
    assert f"or add it to read.allow in {f}" in p.check("open", "read", b"/etc/hostname")


def test_pyproject_table_is_found_from_the_cwd_upward(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.posix_shim.read]\nallow = ["/etc/passwd"]\n')
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    assert build(cwd=sub).check("open", "read", b"/etc/passwd") is None


@pytest.mark.parametrize("text, expected", [
    ('[read]\nalow = ["x"]\n', "read: unknown key 'alow' (did you mean 'allow'?)"),
    ('colour = 1\n', "top level: unknown key 'colour'"),
    ('[read]\nallow = "x"\n', "read.allow: must be a list or true or false, not str 'x'"),
    ('[read\n', "TOML syntax error: Expected ']' at the end of a table declaration (at line 1, column 6)"),
    ('[net]\nconnect = ["example.com:443"]\n', "net.connect[0]: 'example.com:443': 'example.com' can never match"),
    ('[net]\nbind = ["127.0.0.1:70000"]\n', "net.bind[0]: '127.0.0.1:70000': port range '70000' can never match"),
    ('[calls]\ndeny = ["opne"]\n', "calls.deny[0]: unknown call 'opne' (did you mean 'open'?)"),
    ('[calls]\nfamilies = ["sockest"]\n', "calls.families[0]: unknown family 'sockest'"),
    ('[read]\nallow = ["a\\u0000b"]\n', "read.allow[0]: 'a\\x00b' can never match: a path cannot contain NUL"),
])
def test_malformed_policy_names_file_key_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(PolicyError) as info:
        build(["--policy", str(f)], cwd=tmp_path)
    assert str(info.value).startswith(f"{f}: ")
    assert expected in str(info.value)


def test_bad_flag_values_are_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="--allow-net: 'db.internal:5432'"):
        build(["--allow-net=db.internal:5432"], cwd=tmp_path)


def test_runner_exits_2_on_a_malformed_policy_without_running(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[write]\nallow = [1]\n')
    (tmp_path / "prog.py").write_text('open("ran", "w").close()\n')
    r = run_shim(["--policy", "bad.toml", "prog.py"], cwd=tmp_path)
    assert r.returncode == 2
    assert b"bad.toml: write.allow[0]: must be a string, not int 1" in r.stderr
    assert not (tmp_path / "ran").exists()


def test_policy_check_prints_effective_rules(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('[read]\nallow = ["/etc/passwd", "missing"]\ndeny = ["/opt/x"]\n[calls]\ndeny = ["symlink"]\n')
    r = run_check([str(f)], cwd=tmp_path)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert f"policy: {f}: OK" in out
    assert "read   /etc/passwd" in out and "(read.allow in" in out
    assert "does not exist (yet)" in out and "has no effect" in out
    assert "ENOSYS: symlink" in out and "net    none" in out
    f.write_text("[read]\nallow = 3\n")
    r = run_check([str(f)], cwd=tmp_path)
    assert r.returncode == 2 and b"read.allow: must be" in r.stderr


# ------------------------------------------------------------------------------------------------------------
# The host: kernel confinement beneath the granted roots (what a string check cannot see)
# ------------------------------------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    out = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    out.mkdir()
    (out / "secret").write_bytes(b"SECRET")
    (root / "f").write_bytes(b"inside")
    return {"root": root, "out": out, "secret": out / "secret"}


class _Dispatched:
    """The host's files functions as the dispatcher calls them: each path resolved beneath its root first
    (confine.run_resolved, as the row's `paths` say), which is the defence these tests prove."""

    def __getattr__(self, name: str) -> Any:
        if name not in BY_NAME:  # not a row (`__name__`, `__wrapped__` ...): an AttributeError, as for any object
            raise AttributeError(name)
        fn, specs = getattr(hf, name), confine.path_specs(BY_NAME[name])
        return lambda host, *args: confine.run_resolved(host.access, specs, fn, host, args)


hp = _Dispatched()


def host_for(root: Path, *flags: str) -> Host:
    return Host(build([f"--allow-read={root}", f"--allow-write={root}", *flags], cwd=root))


def read_via(host: Host, path: Path | bytes) -> bytes:
    handle = hf.open(host, os.fsencode(path), os.O_RDONLY, 0)
    h = host.handles.get(handle)
    try:
        return hf.read(host, h, 100)
    finally:
        hf.close(host, h)


def test_symlinks_out_of_a_root_are_refused(tree: dict[str, Path]) -> None:
    root = tree["root"]
    os.symlink(tree["secret"], root / "abs")  # absolute
    os.symlink(os.path.relpath(tree["secret"], root), root / "rel")  # relative, climbing out
    os.symlink(tree["out"], root / "dirlink")  # a folder
    os.symlink(root / "f", root / "abs_inside")  # absolute but staying inside: fine
    host = host_for(root)
    assert read_via(host, root / "f") == b"inside"
    assert read_via(host, root / "abs_inside") == b"inside"
    for p in (root / "abs", root / "rel", root / "dirlink" / "secret", root / "sub" / ".." / ".." / "outside" /
              "secret"):
        with pytest.raises(PermissionError):
            read_via(host, p)
        with pytest.raises(PermissionError):
            hf.open(host, os.fsencode(p), os.O_WRONLY | os.O_TRUNC, 0)
        with pytest.raises(PermissionError):
            hp.stat(host, os.fsencode(p))
    with pytest.raises(PermissionError):
        hf.open(host, os.fsencode(root / "dirlink" / "new"), os.O_WRONLY | os.O_CREAT, 0o644)
    with pytest.raises(PermissionError):
        hp.chmod(host, os.fsencode(root / "abs"), 0o777, True)
    with pytest.raises(PermissionError):
        hp.truncate(host, os.fsencode(root / "rel"), 0)
    assert not (tree["out"] / "new").exists()
    assert tree["secret"].read_bytes() == b"SECRET" and oct(tree["secret"].stat().st_mode & 0o777) != "0o777"
    # The symlink itself is inside: lstat and readlink of it are fine.
    assert hp.readlink(host, os.fsencode(root / "abs")) == os.fsencode(tree["secret"])
    assert hp.lstat(host, os.fsencode(root / "abs"))[0] & 0o170000 == 0o120000


def test_a_symlink_to_another_granted_root_is_followed(tree: dict[str, Path]) -> None:
    root = tree["root"]
    os.symlink(tree["secret"], root / "abs")
    host = host_for(root, f"--allow-read={tree['secret']}")
    assert read_via(host, root / "abs") == b"SECRET"


def test_a_symlink_cannot_reach_a_denied_path_inside_a_root(tree: dict[str, Path]) -> None:
    root = tree["root"]
    (root / "private").mkdir()
    (root / "private" / "key").write_bytes(b"KEY")
    os.symlink("private/key", root / "alias")
    host = host_for(root, f"--deny-read={root / 'private'}")
    with pytest.raises(PermissionError):
        read_via(host, root / "alias")
    assert read_via(host, root / "f") == b"inside"


def test_rename_and_link_cannot_move_a_file_out_of_bounds(tree: dict[str, Path]) -> None:
    root, out = tree["root"], tree["out"]
    os.symlink(out, root / "dirlink")
    os.symlink(tree["secret"], root / "abs")
    host = host_for(root)
    with pytest.raises(PermissionError):
        hp.rename(host, os.fsencode(root / "f"), os.fsencode(root / "dirlink" / "f"))
    with pytest.raises(PermissionError):
        hp.rename(host, os.fsencode(root / "dirlink" / "secret"), os.fsencode(root / "stolen"))
    with pytest.raises(PermissionError):
        hp.link(host, os.fsencode(root / "abs"), os.fsencode(root / "hard"), True)  # follow the symlink out
    with pytest.raises(PermissionError):
        hp.link(host, os.fsencode(root / "dirlink" / "secret"), os.fsencode(root / "hard"), False)
    with pytest.raises(PermissionError):
        hp.unlink(host, os.fsencode(root / "dirlink" / "secret"))
    with pytest.raises(PermissionError):
        hp.mkdir(host, os.fsencode(root / "dirlink" / "d"), 0o755)
    assert (root / "f").exists() and not (out / "f").exists() and not (root / "hard").exists()
    assert not (root / "stolen").exists() and tree["secret"].exists() and not (out / "d").exists()
    # Inside the root the same calls work.
    hp.rename(host, os.fsencode(root / "f"), os.fsencode(root / "sub" / "g"))
    hp.link(host, os.fsencode(root / "sub" / "g"), os.fsencode(root / "h"), True)
    assert (root / "h").read_bytes() == b"inside" and os.stat(root / "h").st_nlink == 2


def test_a_race_swapping_a_folder_for_a_symlink_never_escapes(tree: dict[str, Path]) -> None:
    root, out = tree["root"], tree["out"]
    d = root / "d"
    d.mkdir()
    (d / "secret").write_bytes(b"benign")
    host = host_for(root)
    stop = time.monotonic() + 1.0
    seen: set[bytes] = set()

    def swapper() -> None:
        while time.monotonic() < stop:
            os.rename(d, root / "d.real")
            os.symlink(out, d)
            os.unlink(d)
            os.rename(root / "d.real", d)

    t = threading.Thread(target=swapper)
    t.start()
    try:
        while time.monotonic() < stop:
            try:
                seen.add(read_via(host, d / "secret"))
            except OSError as exc:
                assert exc.errno in (errno.EACCES, errno.ENOENT, errno.EXDEV, errno.ELOOP)
    finally:
        t.join(timeout=5)
    assert b"SECRET" not in seen
    assert b"benign" in seen


def test_unix_socket_paths_are_confined_on_the_host(tree: dict[str, Path]) -> None:
    hs = pytest.importorskip("ocall_bridge.host.sockets")
    root, out = tree["root"], tree["out"]
    server = socket.socket(AF_UNIX)
    server.bind(str(out / "s.sock"))
    server.listen()
    os.symlink(out / "s.sock", root / "alias.sock")
    os.symlink(out, root / "dirlink")
    host = host_for(root)
    try:
        h = host.handles.get(hs.socket(host, AF_UNIX, socket.SOCK_STREAM, 0))
        with pytest.raises(PermissionError):
            hs.connect(host, h, (AF_UNIX, "", 0, 0, 0, os.fsencode(root / "alias.sock")))
        with pytest.raises(PermissionError):
            hs.bind(host, h, (AF_UNIX, "", 0, 0, 0, os.fsencode(root / "dirlink" / "b.sock")))
        assert not (out / "b.sock").exists()
        # Inside the root both work, and the names are the ones the program gave.
        hs.bind(host, h, (AF_UNIX, "", 0, 0, 0, os.fsencode(root / "mine.sock")))
        assert hs.getsockname(host, h)[5] == os.fsencode(root / "mine.sock")
        hs.listen(host, h, 1)
        c = host.handles.get(hs.socket(host, AF_UNIX, socket.SOCK_STREAM, 0))
        hs.connect(host, c, (AF_UNIX, "", 0, 0, 0, os.fsencode(root / "mine.sock")))
    finally:
        server.close()
        host.close()


def test_openat2_prebuilt_ffi_matches_the_cdef(tmp_path: Path) -> None:
    """confine.py carries cffi's pre-parsed form of its cdef (fast start-up); it must be exactly what cffi makes."""
    pytest.importorskip("cffi")
    from ocall_bridge.host import preparsed_ffi

    assert preparsed_ffi.regenerate("_posix_shim_openat2", confine.CDEF, tmp_path) == confine._PREPARSED
    assert confine._ffi.sizeof("struct open_how") == 24


# ------------------------------------------------------------------------------------------------------------
# End to end: both checks, on every backend
# ------------------------------------------------------------------------------------------------------------

def test_reading_a_system_file_e2e(tmp_path: Path, backend: str) -> None:
    # (/etc/passwd itself is granted by default now: the C library reads it for pwd and Path.owner().)
    code = "print(open('/etc/hostname').read().strip())"
    r = run_shim(["-c", code], backend=backend, cwd=tmp_path)
    assert r.returncode == 1
    assert b"posix_shim: open('/etc/hostname') denied: no read access to /etc/hostname (allow with " \
           b"--allow-read=/etc/hostname)" in r.stderr
    assert b"PolicyDenied" in r.stderr
    r = run_shim(["--allow-read=/etc/hostname", "-c", code], backend=backend, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == Path("/etc/hostname").read_text().strip().encode()


def test_symlink_escape_e2e(tmp_path: Path, backend: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("SECRET")
    work = tmp_path / "work"
    work.mkdir()
    code = ("import os\nos.symlink({!r}, 'p')\ntry:\n    open('p').read()\nexcept PermissionError as e:\n"
            "    print('refused', e.errno)\n".format(str(outside / "secret")))
    r = run_shim(["-c", code], backend=backend, cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"refused 13\n"


def test_network_e2e_if_sockets_are_interposed(tmp_path: Path, backend: str) -> None:
    if not (REPO / "enclave_libc" / "sockets.py").exists():
        pytest.skip("the sockets family is not in this build")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(10)
    port = srv.getsockname()[1]
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=5)\nprint('ok')\n"
    try:
        r = run_shim(["-c", code], backend=backend, cwd=tmp_path)
        assert r.returncode == 1
        assert f"no permission to connect to 127.0.0.1:{port} (allow with --allow-net=127.0.0.1:{port})".encode() \
            in r.stderr
        r = run_shim([f"--allow-net=127.0.0.1:{port}", "-c", code], backend=backend, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"ok\n"
    finally:
        srv.close()


@pytest.mark.parametrize("code, needle", [
    ("import ctypes\nlibc = ctypes.CDLL('libc.so.6')\nlibc.open(b'/etc/passwd', 0)\n",
     b"ctypes.CDLL() is outside the enclave's supported POSIX subset: loading 'libc.so.6' is refused"),
    ("import ctypes\nctypes.CDLL(None).open(b'/etc/passwd', 0)\n", b"looking up 'open' is refused"),
    ("import subprocess\nsubprocess.run(['true'], timeout=5)\n", b"[Errno 38]"),
    ("import os\nos.system('true')\n", b"[Errno 38]"),
])
def test_tripwires_refuse_native_escapes(tmp_path: Path, backend: str, code: str, needle: bytes) -> None:
    r = run_shim(["-c", code], backend=backend, cwd=tmp_path)
    assert r.returncode == 1
    assert needle in r.stderr or needle.replace(b"[Errno 38]", b"posix_shim:") in r.stderr, r.stderr
    assert b"posix_shim" in r.stderr


def test_allow_ffi_lets_ctypes_load(tmp_path: Path) -> None:
    r = run_shim(["--allow-ffi", "-c", "import ctypes\nprint(ctypes.CDLL('libc.so.6').getpid() > 0)"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"True\n"


# ------------------------------------------------------------------------------------------------------------
# Learn mode
# ------------------------------------------------------------------------------------------------------------

def test_learn_then_run_under_the_learned_policy(tmp_path: Path, backend: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("payload")
    work = tmp_path / "work"
    work.mkdir()
    prog = tmp_path / "app" / "prog.py"
    prog.parent.mkdir()
    prog.write_text(f"import os\nprint(open({str(data / 'in.txt')!r}).read())\n"
                    f"open({str(data / 'out.txt')!r}, 'w').write('x')\nprint(os.path.exists('/etc/hostname'))\n")
    env = {"TMPDIR": str(work)}  # so the temp-dir generalization does not swallow tmp_path
    r = run_shim([str(prog)], backend=backend, cwd=work, env=env)
    assert r.returncode == 1 and b"no read access to" in r.stderr
    learned = work / "learned.toml"
    r = run_shim(["--learn", str(learned), str(prog)], backend=backend, cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert b"learned policy written to" in r.stderr
    text = learned.read_text()
    assert str(data / "in.txt") in text and str(data / "out.txt") in text and "/etc/hostname" in text
    (data / "out.txt").unlink()
    r = run_shim(["--policy", str(learned), str(prog)], backend=backend, cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"payload\nTrue\n"
    # The learned policy is the smallest: a read it did not see is still refused.
    assert policy.load_file(str(learned), cwd=str(work)).build().check("x", "read", b"/etc/shadow") is not None


@pytest.mark.parametrize("program", ["json_csv.py", "file_copy.py", "dir_walk.py", "tcp_echo.py"])
def test_learn_on_compat_programs(tmp_path: Path, program: str) -> None:
    path = REPO / "compat_tests" / "programs" / program
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    learned = tmp_path / "p.toml"
    first = run_shim(["--learn", str(learned), str(path)], cwd=tmp_path / "a")
    assert first.returncode == 0, first.stderr
    second = run_shim(["--policy", str(learned), str(path)], cwd=tmp_path / "b")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
