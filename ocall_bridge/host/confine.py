"""Kernel path confinement for the host: what a path really reaches is decided by the kernel, beneath a root.

The policy (`check`) judges a path string.  A string check alone is defeated by a symlink or a `..` inside an
allowed folder that leads out of it, and by a directory swapped for a symlink between the check and the use.  So
every host path operation is performed relative to a directory descriptor of the allowed *root* that covers the
path, resolved with `openat2(2)` and `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: the kernel refuses (EXDEV) any
resolution that would leave the root, whatever symlinks or races the enclave arranged.

Operations that are not open(2) (stat, unlink, rename, mkdir...) resolve the *parent directory* of the path
beneath the root, and act on the last name with the `*at` variant and that directory's descriptor, never
following a final symlink unless the call asked for it - and when it did, the target is reached through
`openat2` beneath the root as well.  A rename or link therefore moves names only between directories that are
themselves beneath allowed roots.

An *absolute* symlink inside a root (common in Python installations: `lib64 -> /usr/lib64`) is refused by
`RESOLVE_BENEATH`, as is any symlink when the root contains denied paths (`RESOLVE_NO_SYMLINKS` then, so a link
cannot lead to a denied file).  For those the host asks the kernel where the path really leads (an `O_PATH`
descriptor and its `/proc/self/fd` link), re-checks the policy on that real path, and resolves it again beneath
*its* root with no symlinks allowed at all.  A race that changes the path in between only makes the second
resolution fail.

Root descriptors are opened once and cached for the life of the policy: a root is a capability fixed at first
use (moving the folder later does not move the grant).  Roots that are single files (`--allow-read=/etc/passwd`)
are held as their parent directory plus the name.

If the kernel has no openat2 (Linux < 5.6) every path takes the real-path route: still decided on what the
kernel resolved, with the final object pinned by its descriptor, and a warning is logged once.
"""

from __future__ import annotations

import errno
import logging
import posixpath
import threading
from typing import Any

from ..access import denial_errno
from ..originals import os
from . import preparsed_ffi

log = logging.getLogger("posix_shim.host")

# openat2 is 437 in the unified syscall table every 64-bit Linux architecture uses since 5.6.
SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08

O_PATH = os.O_PATH
O_CLOEXEC = os.O_CLOEXEC
O_DIRECTORY = os.O_DIRECTORY
O_NOFOLLOW = os.O_NOFOLLOW
O_CREAT = os.O_CREAT
O_EXCL = os.O_EXCL
O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_STAT = ("stat",)
_WRITE = ("write",)
AT_FDCWD = -100

_ffi: Any = None
_lib: Any = None
_how: Any = None
_have_openat2: bool | None = None
_lock = threading.Lock()


# The cdef below, pre-parsed by cffi's out-of-line ABI mode (`ffi.set_source(name, None)` +
# `emit_python_code`), so loading costs ~1 ms instead of ~18 ms of pycparser.  tests/test_policy.py regenerates it
# from CDEF and fails if the two ever differ.
CDEF = """
    struct open_how { uint64_t flags; uint64_t mode; uint64_t resolve; };
    long syscall(long number, long dirfd, const char *path, struct open_how *how, size_t size);
"""
# glibc's syscall(2) is variadic; it is declared with the fixed prototype of this one use so cffi passes bytes
# without a copy.  On x86_64 and aarch64 Linux integer and pointer arguments travel in the same registers either
# way, and syscall() itself never reads the vector-register count.
_PREPARSED = dict(
    _version=0x2601,
    _types=b"\x00\x00\x01\x0D\x00\x00\x09\x01\x00\x00\x09\x01\x00\x00\x07\x03\x00\x00\x08\x03\x00\x00\x1C\x01"
           b"\x00\x00\x00\x0F\x00\x00\x02\x01\x00\x00\x00\x09\x00\x00\x18\x01",
    _globals=(b"\x00\x00\x00\x23syscall", 0),
    _struct_unions=((b"\x00\x00\x00\x08\x00\x00\x00\x02open_how", b"\x00\x00\x09\x11flags", b"\x00\x00\x09\x11mode",
                     b"\x00\x00\x09\x11resolve"),),
)


def _make_ffi() -> Any:
    return preparsed_ffi.load("_posix_shim_openat2", _PREPARSED, CDEF)


def _load() -> bool:
    """Bind openat2 through cffi (ABI mode, no compiler).  False when it cannot be used here."""
    global _ffi, _lib, _have_openat2
    if _have_openat2 is not None:
        return _have_openat2
    try:
        _ffi = _make_ffi()
        _lib = _ffi.dlopen(None)
        probe = _openat2_raw(AT_FDCWD, b"/", O_PATH | O_CLOEXEC, 0, 0)
        os.close(probe)
        _have_openat2 = True
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EPERM):
            raise
        log.warning("this kernel has no openat2 (%s): host paths are confined by resolving them first, "
                    "which is slower", os.strerror(exc.errno))
        _have_openat2 = False
    except ImportError:
        log.warning("cffi is not installed: host paths are confined by resolving them first, which is slower")
        _have_openat2 = False
    return _have_openat2


def _make_how(flags: int, mode: int, resolve: int) -> Any:
    how = _ffi.new("struct open_how *")
    how.flags = flags
    how.mode = mode
    how.resolve = resolve
    return how


def _openat2_raw(dirfd: int, path: bytes, flags: int, mode: int, resolve: int) -> int:
    how = _make_how(flags, mode, resolve)
    fd = _lib.syscall(SYS_OPENAT2, dirfd, path, how, 24)
    if fd < 0:
        err = _ffi.errno
        raise OSError(err, os.strerror(err))
    return fd


def openat2(dirfd: int, path: bytes, flags: int, mode: int = 0, resolve: int = RESOLVE_BENEATH) -> int:
    """openat2(2): a new descriptor for `path` resolved beneath `dirfd` (raises OSError)."""
    if not _load():
        raise OSError(errno.ENOSYS, "openat2 is not available")
    return _openat2_raw(dirfd, path, flags, mode, resolve)


class Escape(PermissionError):
    """A path that leads outside every root its kind allows: answered as EACCES (ENOENT for the metadata of a
    path the policy leaves out of the enclave's view: access.Absent)."""

    def __init__(self, message: str, err: int = errno.EACCES) -> None:
        super().__init__(err, message)


def _norm(path: bytes) -> bytes:
    if (b"//" not in path and b"/./" not in path and b"/../" not in path
            and not path.endswith((b"/.", b"/..")) and (len(path) == 1 or not path.endswith(b"/"))):
        return path  # already normal: the common case skips the pure-Python normpath
    p = posixpath.normpath(path)
    return b"/" + p.lstrip(b"/") if p.startswith(b"//") else p


def _covers(root: bytes, path: bytes) -> bool:
    return root == b"/" or path == root or (path.startswith(root) and path[len(root):len(root) + 1] == b"/")


def _split_rel(root: bytes, raw: bytes, norm: bytes) -> bytes:
    """`raw` relative to `root`: the raw text when it starts with the root (so `link/..` keeps the kernel's
    meaning), else the normalized text (the `..` was above the root, where no symlink of ours can matter)."""
    if raw.startswith(root) and raw[len(root):len(root) + 1] == b"/" and root != b"/":
        return raw[len(root) + 1:] or b"."
    for candidate in (raw, norm):
        if _covers(root, candidate):
            rest = candidate[len(root):] if root != b"/" else candidate
            rest = rest.lstrip(b"/")
            return rest or b"."
    return b"."  # unreachable: the root was chosen because it covers `norm`


class _Root:
    __slots__ = ("path", "fd", "parent_fd", "name", "is_dir", "strict")

    def __init__(self, path: bytes, fd: int, parent_fd: int, name: bytes, is_dir: bool, strict: bool) -> None:
        self.path, self.fd, self.parent_fd, self.name, self.is_dir, self.strict = (path, fd, parent_fd, name,
                                                                                   is_dir, strict)


def fd_path(fd: int) -> bytes:
    """Where the kernel says a descriptor leads (its /proc/self/fd link): the real path the policy is checked on."""
    return os.readlink(b"/proc/self/fd/%d" % fd)


def where_now(path: bytes) -> bytes:
    """`path` with every symlink in its existing part resolved, as the kernel sees it now (the part that does not
    exist yet is appended as written)."""
    missing: list[bytes] = []
    head = path
    while True:
        try:
            fd = os.open(head or b"/", O_PATH | O_CLOEXEC)
        except OSError:
            if head in (b"", b"/"):
                return path
            head, _, name = head.rpartition(b"/")
            missing.append(name)
            continue
        try:
            real = fd_path(fd)
        finally:
            os.close(fd)
        if not real.startswith(b"/"):
            return path
        return posixpath.join(real, *reversed(missing)) if missing else real


class Confiner:
    """Path operations for one policy, each confined beneath the root that grants it."""

    def __init__(self, access: Any) -> None:
        self.access = access
        # Where each root really is, fixed now: a Confiner is made at the host's first path call, before it
        # performs anything the enclave asked.  A root is later opened along exactly this path with no symlink
        # allowed, so a granted folder that did not exist yet cannot be created by the program as a symlink
        # (`os.symlink("/etc", granted)`) and then lead anywhere; nor can an existing one be swapped for one.
        self._fixed: dict[bytes, bytes] = {}
        for kind in ("read", "write"):
            for root in access.roots(kind) or ():
                if root not in self._fixed:
                    self._fixed[root] = where_now(root)
        self._roots: dict[bytes, _Root] = {}
        self._parents: dict[bytes, int] = {}
        self._kind_roots: dict[str, Any] = {}
        self._fast: dict[tuple[tuple[str, ...], bytes], tuple[int, bytes, int]] = {}
        self._hows: dict[tuple[int, int], Any] = {}
        self._chosen: dict[tuple[tuple[str, ...], bytes], bytes | None] = {}
        self._kernel = _load()

    # -- roots -----------------------------------------------------------------------------------------------
    def _parent_fd(self, parent: bytes) -> int:
        fd = self._parents.get(parent)
        if fd is None:
            fd = self._parents[parent] = self._open_fixed(parent)
        return fd

    def _open_fixed(self, real: bytes) -> int:
        """An O_PATH descriptor of the directory at `real` (a path fixed when the policy was), with no symlink
        anywhere on the way: one there now was put there since, and is refused (ELOOP, or ENOTDIR for the last
        name where the kernel lacks openat2)."""
        flags = O_PATH | O_DIRECTORY | O_CLOEXEC
        if self._kernel:
            return _openat2_raw(AT_FDCWD, real, flags, 0, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
        return os.open(real, flags | O_NOFOLLOW)

    def _root(self, path: bytes) -> _Root:
        r = self._roots.get(path)
        if r is not None:
            return r
        with _lock:
            r = self._roots.get(path)
            if r is not None:
                return r
            real = self._fixed.get(path, path)  # every root was fixed at init; as written, with no symlink, if not
            try:
                if real == b"/":
                    parent_fd, name = self._parent_fd(b"/"), b"."
                else:
                    parent, _, name = real.rpartition(b"/")
                    parent_fd = self._parent_fd(parent or b"/")
                strict = bool(getattr(self.access, "denials_within", lambda _: False)(path))
                try:
                    fd = self._open_fixed(real)
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        # Not there yet (a file or folder the program will create): asked again next time.
                        return _Root(path, -1, parent_fd, name, False, strict)
                    if exc.errno != errno.ENOTDIR:
                        raise
                    fd = -1
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise Escape(f"{os.fsdecode(path)} has become a symlink since the policy was fixed") from None
                raise
            r = _Root(path, fd, parent_fd, name, fd >= 0, strict)
            self._roots[path] = r
            return r

    def _choose(self, kinds: tuple[str, ...], norm: bytes) -> bytes | None:
        """The deepest root that covers `norm` for every kind (covers for one kind and not for another: None)."""
        key = (kinds, norm)
        found = self._chosen.get(key, self)
        if found is not self:
            return found  # type: ignore[return-value]
        best: bytes | None = None
        for kind in kinds:
            roots = self._kind_roots.get(kind, self)
            if roots is self:
                roots = self._kind_roots[kind] = self.access.roots(kind)
            if roots is None:  # this kind is not confined at all (allowed everywhere, nothing denied)
                continue
            hit = next((r for r in roots if _covers(r, norm)), None)  # roots come deepest first
            if hit is None:
                best = None
                break
            if best is None or len(hit) > len(best):
                best = hit
        if len(self._chosen) < 8192:
            self._chosen[key] = best
        return best

    def unconfined(self, kinds: tuple[str, ...]) -> bool:
        """Whether no kind of `kinds` is confined (the policy allows it everywhere)."""
        for kind in kinds:
            roots = self._kind_roots.get(kind, self)
            if roots is self:
                roots = self._kind_roots[kind] = self.access.roots(kind)
            if roots is not None:
                return False
        return True

    # -- resolution ------------------------------------------------------------------------------------------
    def open_fd(self, path: bytes, kinds: tuple[str, ...], flags: int, mode: int = 0) -> int:
        """A descriptor for `path` (flags as open(2)), resolved beneath the root that allows `kinds`."""
        # Fast path: where this path was resolved before (a pure function of the immutable policy and the cached
        # root descriptors), go straight to the kernel.  Any failure takes the full path below.
        fast = self._fast.get((kinds, path))
        if fast is not None and not flags & (O_CREAT | O_TMPFILE):
            key = (flags | O_CLOEXEC, fast[2])
            how = self._hows.get(key)
            if how is None:
                how = self._hows[key] = _make_how(flags | O_CLOEXEC, 0, fast[2])
            fd = _lib.syscall(SYS_OPENAT2, fast[0], fast[1], how, 24)
            if fd >= 0:
                return fd
        norm = _norm(path)
        root_path = self._choose(kinds, norm)
        if root_path is None:
            if self.unconfined(kinds):
                return os.open(path, flags | O_CLOEXEC, mode)
            # Allowed only as an ancestor of a grant (stat of /home on the way to /home/me/project): metadata
            # only, on the lexical path, never following a final symlink out.
            reason = self.access.check("resolve", "stat", norm) if kinds == _STAT else "outside every allowed folder"
            if reason or not flags & O_PATH or flags & ~(O_PATH | O_CLOEXEC | O_NOFOLLOW | O_DIRECTORY):
                raise Escape(f"{os.fsdecode(path)}: {reason or 'metadata only'}",
                             denial_errno(reason) if reason else errno.EACCES)
            return os.open(norm, flags | O_CLOEXEC)
        if not flags & (O_CREAT | O_TMPFILE):
            mode = 0  # openat2 refuses a mode without O_CREAT; open(2) ignored it
        root = self._root(root_path)
        if not self._kernel:
            return self._via_realpath(path, kinds, flags, mode)
        try:
            if root.is_dir:
                rel = _split_rel(root_path, path, norm)
                resolve = self._resolve(root)
                fd = _openat2_raw(root.fd, rel, flags | O_CLOEXEC, mode, resolve)
                if len(self._fast) < 8192:
                    self._fast[(kinds, path)] = (root.fd, rel, resolve)
                return fd
            # A file root (or one not created yet): only the root itself, named in its parent.
            if norm != root_path:
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            return _openat2_raw(root.parent_fd, root.name, flags | O_CLOEXEC, mode,
                                RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ELOOP) or (exc.errno == errno.ELOOP and flags & O_NOFOLLOW
                                                               and not root.strict):
                raise
            return self._via_realpath(path, kinds, flags, mode)

    @staticmethod
    def _resolve(root: _Root) -> int:
        if root.strict:
            return RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS
        return RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS

    def _via_realpath(self, path: bytes, kinds: tuple[str, ...], flags: int, mode: int) -> int:
        """Where the kernel says `path` leads; allowed only if that real path is allowed, then opened beneath its
        own root with no symlinks at all (a path changed in between fails instead of escaping)."""
        nofollow = bool(flags & O_NOFOLLOW)
        try:
            probe = os.open(path, O_PATH | O_CLOEXEC | (O_NOFOLLOW if nofollow else 0))
        except OSError as exc:
            if exc.errno != errno.ENOENT or not flags & O_CREAT:
                raise
            # Creating through a path whose parent is a symlink: the parent's real path decides.
            parent, _, name = path.rpartition(b"/")
            probe = os.open(parent or b"/", O_PATH | O_CLOEXEC | O_DIRECTORY)
            try:
                real = fd_path(probe) + b"/" + name
            finally:
                os.close(probe)
            return self._open_real(path, real, kinds, flags, mode)
        try:
            real = fd_path(probe)
            if not self._kernel:
                self._refuse_unless_allowed(path, real, kinds)
                if flags & O_PATH:
                    return os.dup(probe)  # the object the check was made on, pinned
                return os.open(b"/proc/self/fd/%d" % probe, flags | O_CLOEXEC, mode)
        finally:
            os.close(probe)
        return self._open_real(path, real, kinds, flags, mode)

    def _refuse_unless_allowed(self, path: bytes, real: bytes, kinds: tuple[str, ...]) -> None:
        if not real.startswith(b"/"):  # an anonymous inode or a deleted file: no path to judge
            raise Escape(f"{os.fsdecode(path)} does not lead to a path posix_shim can check")
        for kind in kinds:
            reason = self.access.check("resolve", kind, real)
            if reason:
                raise Escape(f"{os.fsdecode(path)} leads to {os.fsdecode(real)}: {reason}")

    def _open_real(self, path: bytes, real: bytes, kinds: tuple[str, ...], flags: int, mode: int) -> int:
        self._refuse_unless_allowed(path, real, kinds)
        root_path = self._choose(kinds, real)
        if root_path is None and self.unconfined(kinds):
            return os.open(real, flags | O_CLOEXEC, mode)
        if root_path is None:  # an ancestor-only stat (checked above)
            if not flags & O_PATH:
                raise Escape(f"{os.fsdecode(path)}: metadata only")
            return os.open(real, flags | O_CLOEXEC | O_NOFOLLOW)
        root = self._root(root_path)
        strict = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS
        if not root.is_dir:
            return _openat2_raw(root.parent_fd, root.name, flags | O_CLOEXEC, mode, strict)
        try:
            return _openat2_raw(root.fd, _split_rel(root_path, real, real), flags | O_CLOEXEC, mode, strict)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.ELOOP):
                raise Escape(f"{os.fsdecode(path)} changed while it was being resolved") from None
            raise

    def parent(self, path: bytes, kinds: tuple[str, ...], dot_errno: int = errno.EINVAL) -> tuple[int, bytes, bool]:
        """(directory descriptor, last name, whether the caller must close the descriptor) for `path`, the
        directory resolved beneath the root that allows `kinds`.

        A path ending in '.' or '..' names an existing directory, never a new entry: after checking that it
        resolves, the call fails with `dot_errno` (EEXIST for mkdir, as natively)."""
        norm = _norm(path)
        head, _, name = path.rstrip(b"/").rpartition(b"/")
        if name in (b".", b"..") or not name:
            os.close(self.open_fd(path, kinds if kinds != ("write",) else _STAT, O_PATH | O_DIRECTORY))
            raise OSError(dot_errno, os.strerror(dot_errno))
        root_path = self._choose(kinds, norm)
        if root_path is None:
            if self.unconfined(kinds):
                return AT_FDCWD, path, False
            raise Escape(f"{os.fsdecode(path)} is outside every allowed folder")
        root = self._root(root_path)
        if norm == root_path:
            # The root itself (a granted file, or the granted folder): it is named in its parent.
            return root.parent_fd, root.name, False
        if not root.is_dir:
            raise Escape(f"{os.fsdecode(path)} is outside every allowed folder")
        parent_path = head or b"/"
        parent_norm = _norm(parent_path)
        if parent_norm == root_path:
            return root.fd, name, False
        d = self.open_fd(parent_path, kinds, O_PATH | O_DIRECTORY)
        if root.strict:
            try:
                self._judge_entry(path, parent_norm, d, name, kinds)
            except BaseException:
                os.close(d)
                raise
        return d, name, True

    def _judge_entry(self, path: bytes, parent_norm: bytes, d: int, name: bytes, kinds: tuple[str, ...]) -> None:
        """Something is denied within this root, and the directory `d` may have been reached through a symlink
        (`here -> .`): the entry is judged at its real place, or `here/secret` would unlink a --deny-write file
        that `secret` cannot."""
        real_dir = fd_path(d).rstrip(b"/") or b"/"
        if real_dir == parent_norm:
            return  # no symlink on the way: the path as written is where it acts, and was judged as such
        self._refuse_unless_allowed(path, posixpath.join(real_dir, name), kinds)


_confiners: dict[int, tuple[Any, Confiner]] = {}


def confiner_for(access: Any) -> Confiner | None:
    """The Confiner of this policy (cached with it), or None when the policy confines nothing (allow-all)."""
    entry = _confiners.get(id(access))
    if entry is not None and entry[0] is access:
        return entry[1]
    roots = getattr(access, "roots", None)
    if roots is None or all(roots(k) is None for k in ("read", "write", "stat")):
        c = None
    else:
        c = Confiner(access)
    with _lock:
        _confiners[id(access)] = (access, c)  # type: ignore[assignment]
    return c




class Target:
    """A path parameter as a host function receives it: already resolved beneath the root that grants it.

    Use it as `os.X(t.name, dir_fd=t.dir_fd, follow_symlinks=t.follow)`: for an *entry* (the call acts on the
    last name of the path: unlink, mkdir, lchmod) `dir_fd` is its parent directory's descriptor and `name` the last
    name, `follow` False; for an *object* (the call acts on what the path names) `fd` is a descriptor of it,
    `name` its magic link /proc/self/fd/N (which the kernel resolves to that very object, never by the path
    again), `dir_fd` None and `follow` True.  Under a policy that confines nothing, an entry is the plain path.
    """

    __slots__ = ("fd", "dir_fd", "name", "follow")

    def __init__(self, name: bytes, dir_fd: int | None = None, fd: int = -1, follow: bool | None = None) -> None:
        self.name, self.dir_fd, self.fd = name, dir_fd, fd
        self.follow = fd >= 0 if follow is None else follow

    def __repr__(self) -> str:
        return f"Target({self.name!r}, dir_fd={self.dir_fd}, fd={self.fd})"


# The descriptor each object form is opened with (calls.Resolve: "object" may add flags of its own).
_OBJECT_FLAGS = {"object": O_PATH, "link": O_PATH | O_NOFOLLOW}

# One compiled path spec of a row: (parameter index, kinds, Resolve, index of its follow flag or -1).
PathSpec = tuple[int, tuple[str, ...], Any, int]


def path_specs(call: Any) -> tuple[PathSpec, ...]:
    """The row's `paths` facts in the form `run_resolved` takes ("self": the host function resolves it)."""
    index = {f.name: i for i, f in enumerate(call.params)}
    kinds = dict(call.resources)
    return tuple((index[name], (kinds[name],), how, index[how.follow] if how.follow else -1)
                 for name, how in call.paths if how.at != "self")


def run_resolved(access: Any, specs: tuple[PathSpec, ...], fn: Any, host: Any, args: tuple) -> Any:
    """Call `fn(host, *args)` with each path of `specs` replaced by its Target, resolved beneath the root that
    grants its kind (Confiner.open_fd / Confiner.parent), and release every descriptor opened for it after.

    This is the one place a host function's paths are confined: the table says how (calls.Resolve), the
    dispatcher (host/runtime.py) calls this for every row with paths, and no host function sees a raw path."""
    conf = confiner_for(access)
    resolved = list(args)
    if conf is None and getattr(fn, "by_path", False):
        # Nothing confined (allow-all) and a host function that takes the plain path (`by_path`, only on rows
        # without extra open flags: see host/runtime.Entry): the kernel resolves the path once, in the host
        # function's own call, exactly as it would have for the O_PATH open (the same walk, the same follow rule:
        # "link" does not follow the last name), and no descriptor is opened.
        for i, _, how, follow in specs:
            at = how.at if follow < 0 or args[follow] else how.unfollowed
            resolved[i] = Target(args[i], None, -1, at == "object")
        return fn(host, *resolved)
    owned: list[int] = []
    try:
        for i, kinds, how, follow in specs:
            at = how.at if follow < 0 or args[follow] else how.unfollowed
            path = args[i]
            if at == "entry":
                if conf is None:
                    resolved[i] = Target(path)
                    continue
                d, name, own = conf.parent(path, kinds, how.dot)
                if own:
                    owned.append(d)
                resolved[i] = Target(name, None if d == AT_FDCWD else d)
                continue
            flags = how.flags or _OBJECT_FLAGS[at]
            if at == "link":
                flags |= O_NOFOLLOW
            fd = os.open(path, flags | O_CLOEXEC) if conf is None else conf.open_fd(path, kinds, flags)
            owned.append(fd)
            resolved[i] = Target(b"/proc/self/fd/%d" % fd, None, fd)
        return fn(host, *resolved)
    finally:
        for fd in owned:
            os.close(fd)


_load()  # now, while no enclave runs: the tripwires refuse library loading once one does

__all__ = ["Confiner", "Escape", "Target", "confiner_for", "path_specs", "run_resolved", "openat2",
           "RESOLVE_BENEATH", "RESOLVE_NO_MAGICLINKS", "RESOLVE_NO_SYMLINKS"]
