"""Signed manifests: what an enclave is (its measurement) and who vouches for it (its signer).

A manifest records the entry point, the policy, the runtime (version, and a hash of the posix_shim, enclave_libc
and ocall_bridge sources), and the SHA-256 of every trusted file: the script, each Python module it loads (found
by a learning run in a sim enclave plus a static scan of imports, neither of which needs the program's
cooperation), and the data files the signer lists.

    measurement = SHA-256(canonical(manifest without [signature]))      (SGX's MRENCLAVE)
    signer      = SHA-256(raw 32-byte Ed25519 public key of the signer) (SGX's MRSIGNER)

canonical() is the JSON text of the manifest's fields with sorted keys, no whitespace, UTF-8: the TOML file is
for people, the measurement never depends on its layout.  The signature is Ed25519 over the canonical bytes.

Running `python -m posix_shim --manifest app.manifest.toml` verifies the signature and the runtime hash before
anything starts (exit 2 otherwise), runs the entry point under the manifest's policy, and hands the trusted
table to the enclave (`enclave_libc/trusted.py`) and the identity to the host's platform (attestation).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.machinery import PathFinder
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ocall_bridge.access import Access

from . import policy as _policy

FORMAT = "posix_shim-manifest"
VERSION = 1
RUNTIME_PACKAGES = ("posix_shim", "enclave_libc", "ocall_bridge")
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class ManifestError(Exception):
    """A manifest that cannot be used: the message says which check failed."""


# -- keys --------------------------------------------------------------------------------------------------

def keygen(path: str) -> Ed25519PublicKey:
    """A new Ed25519 signer key in a PEM file only its owner can read (refuses to overwrite)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key.public_key()


def load_signing_key(path: str) -> Ed25519PrivateKey:
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ManifestError(f"{path}: not an Ed25519 private key (make one with 'posix_shim keygen')")
    return key


def signer_id(public: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(public.public_bytes(*_RAW)).digest()


# -- hashes ------------------------------------------------------------------------------------------------

def file_sha256(path: str | bytes) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def runtime_files() -> list[str]:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for package in RUNTIME_PACKAGES:
        for folder, dirs, names in os.walk(os.path.join(here, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            out += [os.path.join(folder, n) for n in names if n.endswith(".py")]
    return sorted(out)


_runtime_hash: str | None = None


def runtime_hash() -> str:
    """SHA-256 over (relative path, SHA-256) of every .py file of the three runtime packages, in path order."""
    global _runtime_hash
    if _runtime_hash is None:
        base = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        h = hashlib.sha256()
        for path in runtime_files():
            h.update(f"{os.path.relpath(path, base)}\0{file_sha256(path)}\n".encode())
        _runtime_hash = h.hexdigest()
    return _runtime_hash


def runtime_version() -> str:
    from . import __version__

    return str(__version__)


# -- the manifest ------------------------------------------------------------------------------------------

@dataclass
class Manifest:
    entry: dict[str, str]
    policy: dict[str, Any]
    runtime: dict[str, str]
    trusted: dict[str, str]
    debug: bool = False
    signer_key: bytes = b""  # raw Ed25519 public key
    signature: bytes = b""
    path: str | None = field(default=None, compare=False)

    def body(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "entry": self.entry, "debug": self.debug,
                "runtime": self.runtime, "policy": self.policy, "trusted": self.trusted}

    def canonical(self) -> bytes:
        return json.dumps(self.body(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def measurement(self) -> bytes:
        return hashlib.sha256(self.canonical()).digest()

    @property
    def signer(self) -> bytes:
        return hashlib.sha256(self.signer_key).digest()

    def access(self) -> Access:
        return _policy.from_data(self.policy)

    def run_options(self) -> dict[str, Any]:
        """Enclave(...) options for a run of this manifest: its trusted table and the identity to attest."""
        return {"trusted": dict(self.trusted),
                "identity": {"measurement": self.measurement.hex(), "signer": self.signer.hex(), "debug": self.debug}}

    # -- TOML ----------------------------------------------------------------------------------------------
    def to_toml(self) -> str:
        s = _toml_str
        lines = [f"# {FORMAT}: signed by posix_shim sign; the measurement is SHA-256 of the canonical JSON of",
                 "# everything but [signature] (docs/integrity.md).",
                 f"format = {s(FORMAT)}", f"version = {VERSION}", f"debug = {'true' if self.debug else 'false'}", "",
                 "[entry]"]
        lines += [f"{k} = {s(v)}" for k, v in sorted(self.entry.items())]
        lines += ["", "[runtime]"] + [f"{k} = {s(v)}" for k, v in sorted(self.runtime.items())]
        lines += ["", "[policy]", "# the policy as posix_shim.policy.to_data() gives it (canonical JSON)",
                  f"json = {s(json.dumps(self.policy, sort_keys=True, separators=(',', ':'), ensure_ascii=False))}"]
        lines += ["", "[trusted]", "# absolute path = SHA-256 of its bytes"]
        lines += [f"{s(k)} = {s(v)}" for k, v in sorted(self.trusted.items())]
        lines += ["", "[signature]", f"signer_key = {s(self.signer_key.hex())}", f"value = {s(self.signature.hex())}",
                  f"# measurement = {self.measurement.hex()}", f"# signer = {self.signer.hex()}", ""]
        return "\n".join(lines)

    @classmethod
    def from_toml(cls, text: str, path: str | None = None) -> Manifest:
        where = path or "manifest"
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(f"{where}: not valid TOML: {exc}") from None
        if data.get("format") != FORMAT:
            raise ManifestError(f"{where}: not a {FORMAT} (format = {data.get('format')!r})")
        if data.get("version") != VERSION:
            raise ManifestError(f"{where}: {FORMAT} version {data.get('version')!r} is not supported (this build "
                                f"reads version {VERSION})")
        try:
            entry, runtime, trusted = data["entry"], data["runtime"], data["trusted"]
            policy = json.loads(data["policy"]["json"])
            sig = data["signature"]
            signer_key, signature = bytes.fromhex(sig["signer_key"]), bytes.fromhex(sig["value"])
            debug = data.get("debug", False)
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: missing or malformed field: {exc}") from None
        if not all(isinstance(d, dict) for d in (entry, runtime, trusted, policy)) or not isinstance(debug, bool):
            raise ManifestError(f"{where}: entry, runtime, trusted and policy must be tables")
        return cls({str(k): str(v) for k, v in entry.items()}, policy, {str(k): str(v) for k, v in runtime.items()},
                   {str(k): str(v) for k, v in trusted.items()}, debug, signer_key, signature, path)


def _toml_str(value: str) -> str:
    return json.dumps(str(value), ensure_ascii=False)  # JSON string escapes are TOML basic-string escapes


def sign_manifest(m: Manifest, key: Ed25519PrivateKey) -> Manifest:
    m.signer_key = key.public_key().public_bytes(*_RAW)
    m.signature = key.sign(m.canonical())
    return m


def load(path: str, *, signer: str | bytes | None = None) -> Manifest:
    """Read and verify a manifest: its signature, its runtime against this one, its entry point's presence.

    `signer` (hex or bytes): the signer identity the caller insists on.  ManifestError says what failed.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from None
    m = Manifest.from_toml(text, path)
    try:
        Ed25519PublicKey.from_public_bytes(m.signer_key).verify(m.signature, m.canonical())
    except (InvalidSignature, ValueError):
        raise ManifestError(f"{path}: the signature does not verify: the manifest was changed after it was signed, "
                            f"or signed by another key") from None
    if signer is not None:
        want = bytes.fromhex(signer) if isinstance(signer, str) else bytes(signer)
        if want != m.signer:
            raise ManifestError(f"{path}: signed by {m.signer.hex()}, expected signer {want.hex()}")
    have = runtime_hash()
    if m.runtime.get("hash") != have:
        raise ManifestError(f"{path}: signed for another posix_shim runtime (runtime hash {m.runtime.get('hash')}, "
                            f"version {m.runtime.get('version')}); the installed one is {have} "
                            f"(version {runtime_version()}): sign it again")
    if m.entry.get("kind") != "path" or not m.entry.get("path"):
        raise ManifestError(f"{path}: entry point must be a script path")
    return m


# -- finding the trusted files -----------------------------------------------------------------------------

class _Recorder(Access):
    """The signing policy, remembering every path the enclave opened for reading."""

    def __init__(self, inner: Access) -> None:
        self.inner = inner
        self.violation = inner.violation
        self.opened: dict[bytes, None] = {}
        for method in ("call_allowed", "env_allowed", "env_values", "native_allowed", "roots", "denials_within",
                       "run_programs", "to_data"):
            setattr(self, method, getattr(inner, method))

    def check(self, call: str, kind: str, resource: Any) -> str | None:
        answer = self.inner.check(call, kind, resource)
        if answer is None and call == "open" and kind == "read" and isinstance(resource, bytes):
            self.opened[resource] = None
        return answer


def learn(script: str, args: list[str], access: Access) -> list[str]:
    """Run the script once in a sim enclave under `access`; the regular files it opened for reading."""
    from .enclave import Enclave

    recorder = _Recorder(access)
    with Enclave(policy=recorder, backend="sim") as enclave:
        status = enclave.run_path(script, args)
    if status:
        print(f"posix_shim sign: the learning run of {script} exited with status {status}", file=sys.stderr)
    out = []
    for raw in recorder.opened:
        path = posixpath.normpath(os.fsdecode(raw))
        if os.path.isfile(path):
            out.append(path)
    return out


def _find(name: str, cache: dict[str, str | None], search: list[str]) -> str | None:
    """The source file of module `name`, found without importing (and so without running) anything."""
    if name in cache:
        return cache[name]
    cache[name] = None
    parent, _, last = name.rpartition(".")
    if parent:
        pfile = _find(parent, cache, search)
        if pfile is None or not pfile.endswith("__init__.py"):
            return None
        path = [os.path.dirname(pfile)]
    else:
        path = search
    try:
        spec = PathFinder.find_spec(name, path)
    except (ImportError, ValueError):
        spec = None
    origin = getattr(spec, "origin", None) if spec is not None else None
    if origin and origin.endswith(".py") and os.path.isfile(origin):
        cache[name] = os.path.abspath(origin)
    return cache[name]


_FROM = re.compile(rb"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^#\n]*)", re.M)
_COMMENT = re.compile(rb"#[^\n]*")
_IMPORT = re.compile(rb"^[ \t]*import[ \t]+([^#\n;]+)", re.M)


def _imported_names(source: bytes, package: str) -> list[str]:
    """Module names named by import statements (a line scan: fast, and a name too many only costs a hash)."""
    names = []
    for m in _IMPORT.finditer(source):
        for part in m.group(1).decode("utf-8", "replace").split(","):
            name = part.split(" as ")[0].strip().strip("()\\ ")
            if name:
                names.append(name)
    for m in _FROM.finditer(source):
        dots, base = len(m.group(1)), m.group(2).decode("utf-8", "replace")
        if dots:
            parts = package.split(".") if package else []
            if dots - 1 > len(parts):
                continue
            parts = parts[:len(parts) - (dots - 1)]
            base = ".".join([*parts, base] if base else parts)
        if not base:
            continue
        names.append(base)
        for part in _COMMENT.sub(b"", m.group(3)).decode("utf-8", "replace").split(","):
            name = part.split(" as ")[0].strip().strip("()\\ ")
            if name.isidentifier():
                names.append(f"{base}.{name}")
    return names


def scan_imports(script: str, limit: int = 3000) -> list[str]:
    """Python source files reachable from `script` by import statements (a static scan: no code runs)."""
    search = [os.path.dirname(os.path.realpath(script))] + [p for p in sys.path[1:] if p]
    cache: dict[str, str | None] = {}
    seen: dict[str, None] = {}
    todo = [(os.path.abspath(script), "")]
    while todo and len(seen) < limit:
        file, package = todo.pop()
        if file in seen:
            continue
        seen[file] = None
        try:
            with open(file, "rb") as f:
                source = f.read()
        except OSError:
            continue
        for name in _imported_names(source, package):
            pieces = name.split(".")
            if not all(p.isidentifier() for p in pieces):
                continue
            for i in range(1, len(pieces) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                sub = ".".join(pieces[:i])
                found = _find(sub, cache, search)
                if found and found not in seen:
                    pkg = sub if found.endswith("__init__.py") else sub.rpartition(".")[0]
                    todo.append((found, pkg))
    return list(seen)


def loaded_sources() -> list[str]:
    """Source files of every module loaded in this process: whatever a run may import lazily later."""
    out = []
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.endswith(".py") and os.path.isfile(file):
            out.append(os.path.abspath(file))
    return out


def package_trees(files: Iterable[str], search: list[str]) -> list[str]:
    """Every source file of each top-level package some file belongs to.

    Packages import their own modules in ways no scan sees: lazily inside functions that a learning run did not
    reach, by computed names (encodings, codecs), or from native code (cryptography's Rust core imports its
    Python key classes).  Trusting the whole tree of a package the program uses costs hashes, not safety.
    """
    roots = sorted({os.path.abspath(p) for p in search if p and os.path.isdir(p)}, key=len, reverse=True)
    tops: dict[str, None] = {}
    for f in files:
        for root in roots:
            if f.startswith(root + os.sep):
                first = f[len(root) + 1:].split(os.sep)[0]
                top = os.path.join(root, first)
                if first != f[len(root) + 1:] and os.path.isfile(os.path.join(top, "__init__.py")):
                    tops[top] = None
                break
    out = []
    for top in tops:
        for folder, dirs, names in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            out += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
    return out


def build(script: str, *, key: Ed25519PrivateKey, access: Access | None = None, args: Iterable[str] = (),
          data_files: Iterable[str] = (), learn_run: bool = True, debug: bool = False) -> Manifest:
    """A signed manifest for `python script args`."""
    script = os.path.abspath(script)
    if not os.path.isfile(script):
        raise ManifestError(f"{script}: no such script")
    policy = access if access is not None else _policy.build_default("path", script)
    files: dict[str, None] = {script: None}
    # Loaded for real (a learning run, or this process): these packages' whole trees are trusted; the static scan
    # (which may also match an import in a docstring) adds single files only.
    loaded = loaded_sources()
    if learn_run:
        loaded += [f for f in learn(script, list(args), policy) if f.endswith(".py")]
    search = [os.path.dirname(os.path.realpath(script))] + [p for p in sys.path[1:] if p]
    for f in [*scan_imports(script), *loaded, *package_trees(loaded, search)]:
        files[f] = None
    for f in data_files:
        files[os.path.abspath(f)] = None
    trusted = {posixpath.normpath(f): file_sha256(f) for f in files}
    # Every trusted file is readable, whatever the policy's folders say (a listed data file outside them).
    final = policy.to_data()
    if not final.get("allow_all"):
        covered = _policy.from_data(final)
        for f in trusted:
            if covered.check("open", "read", os.fsencode(f)) is not None:
                final["read"]["allow"].append([f, "manifest: trusted file"])
    m = Manifest({"kind": "path", "path": script}, final,
                 {"version": runtime_version(), "hash": runtime_hash(),
                  "python": ".".join(map(str, sys.version_info[:3]))}, trusted, debug)
    return sign_manifest(m, key)


__all__ = ["Manifest", "ManifestError", "keygen", "load", "build", "runtime_hash", "sign_manifest", "scan_imports",
           "FORMAT", "VERSION"]
