"""Run bundles: one ``.tar.gz`` that carries a run to another machine or share, checkably.

Layout of a bundle::

    run/manifest.json, run/plan.json, run/cache_keys.json, run/partitions.jsonl, the report files
    run/out/...                       the run's output files
    cache/<xx>/<key>.entry            with ``--with-cache``: the cache entries the run used or stored, one
                                      file each (`agi_core.cache.entries`, whatever the cache's layout),
    cache/<xx>/<key>.files-*/...      and their output files
    SHA256SUMS                        ``sha256sum`` format, one line per file above
    SHA256SUMS.sig, SHA256SUMS.pub    when signed: an Ed25519 signature of SHA256SUMS, and the
                                      public key (OpenSSH format) that checks it

`verify_bundle` checks every checksum (naming each file changed, added or removed), refuses
members that are not plain files or folders (symbolic or hard links, devices, FIFOs) or whose
names are absolute or contain ``..``, and checks the signature: against the key given, else
against the embedded one (which proves the bundle is intact, not who made it: `trust` says whose
keys count). `bundle_import.import_bundle` verifies, then unpacks it. Cache entries are exported
only when their tag checks under this user's key (`agi_core.cache.auth`), and leave without it.
Exports are written under a temporary name and renamed into place, so a failure leaves nothing
half-written. Keys (Ed25519) are read by `signing`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from ..atomic import replacing
from ..cache.entries import encode_single
from ..errors import AgiError
from .signing import load_private_key, openssh_public, public_from_bytes
from .writer import HEARTBEAT_FILE, LOG_FILE, MANIFEST_FILE

if TYPE_CHECKING:
    from .model import RunRecord

__all__ = ["PUB_FILE", "RUN_FILES", "SIG_FILE", "SUMS_FILE", "ExportResult", "Verification", "export_run", "hash_member",
           "members", "open_bundle", "parse_sums", "unsafe_kind", "unsafe_name", "verify_bundle"]

SUMS_FILE = "SHA256SUMS"
SIG_FILE = "SHA256SUMS.sig"
PUB_FILE = "SHA256SUMS.pub"
#: the files of a run folder a bundle carries when they exist (besides out/)
RUN_FILES = (MANIFEST_FILE, "plan.json", "cache_keys.json", LOG_FILE, HEARTBEAT_FILE, "gantt.png", "load.png", "dag.png", "cache.png",
             "report.pdf")
_CHUNK = 1 << 20


# -- export ------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    path: Path
    files: int
    size: int
    entries: int = 0  # cache entries included
    missing_entries: list[str] = field(default_factory=list)  # entries the record names that are gone (gc)
    signed: bool = False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files_of(run_dir: Path, record: RunRecord, with_cache: bool) -> tuple[dict[str, Path | bytes], int, list[str]]:
    """Archive name → file on disk (or its bytes); the number of cache entries; the entries that are gone."""
    files: dict[str, Path | bytes] = {}
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_file() and not path.is_symlink():
            files[f"run/{name}"] = path
    out = run_dir / "out"
    if out.is_dir():
        for path in sorted(out.rglob("*")):
            if path.is_file() and not path.is_symlink():
                files[f"run/out/{path.relative_to(out).as_posix()}"] = path
    entries, missing = 0, []
    if with_cache and record.cache:
        entries, missing = _cache_files(Path(record.cache), record, files)
    return files, entries, missing


def _cache_files(root: Path, record: RunRecord, files: dict[str, Path | bytes]) -> tuple[int, list[str]]:
    """Add the cache entries the run used or stored to ``files`` as single-file entries
    (``cache/<xx>/<key>.entry``, checked on the way) with their output folders; returns how many,
    and the locations that are gone or no longer check."""
    from ..cache import CacheStore

    store = CacheStore(root)
    located = {}
    for part in record.partitions:
        location = part.result_location or ""
        if part.cache_key and location.endswith((".pack", ".entry")):
            located.setdefault(part.cache_key, location)
    view = store.view(located)
    missing = [location for key, location in located.items() if key not in view]
    entries = 0
    for key, header, body, _, problem in store.read_raw(view, sorted(located)):
        if body is None:
            missing.append(located[key] + (f" ({problem})" if problem else ""))
            continue
        base = f"cache/{key[:2]}"
        files[f"{base}/{key}.entry"] = encode_single({k: v for k, v in header.items() if k != "tag"}, body)  # tags stay home
        entries += 1
        named = header.get("files")
        if named and "/" not in str(named) and str(named) not in ("..", "."):
            folder = root / key[:2] / str(named)
            for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
                if path.is_file() and not path.is_symlink():
                    files[f"{base}/{named}/{path.relative_to(folder).as_posix()}"] = path
    return entries, missing


class _Hashing:
    """A file object that hashes what is read from it (`tarfile.addfile` reads exactly the size)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


def export_run(record: RunRecord, out: Path, *, with_cache: bool = False, sign_key: Path | None = None) -> ExportResult:
    """Pack ``record``'s run folder (and with ``with_cache`` the cache entries it used) into the
    bundle ``out``, with SHA256SUMS and, given ``sign_key``, its Ed25519 signature."""
    if not record.path:
        raise AgiError(f"run {record.run_id}: its record was not read from a run folder", fix="export a run read from a share")
    run_dir = Path(record.path).parent
    key = load_private_key(sign_key) if sign_key else None  # fail before writing anything
    files, entries, missing = _files_of(run_dir, record, with_cache)
    out = Path(out)
    sums: list[str] = []
    try:
        with replacing(out) as tmp, tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            for name, path in files.items():
                if isinstance(path, bytes):  # made here (a cache entry taken out of its pack)
                    tar.addfile(_tarinfo(name, len(path)), io.BytesIO(path))
                    sums.append(f"{hashlib.sha256(path).hexdigest()}  {name}\n")
                    continue
                with open(path, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    info = _tarinfo(name, stat.st_size)
                    info.mtime = int(stat.st_mtime)
                    reader = _Hashing(handle)  # the bytes hashed are the bytes packed, read once
                    tar.addfile(info, reader)
                sums.append(f"{reader.digest.hexdigest()}  {name}\n")
            text = "".join(sorted(sums, key=lambda line: line[66:])).encode()
            tar.addfile(_tarinfo(SUMS_FILE, len(text)), io.BytesIO(text))
            if key is not None:
                signature = key.sign(text)
                public = openssh_public(key.public_key())
                tar.addfile(_tarinfo(SIG_FILE, len(signature)), io.BytesIO(signature))
                tar.addfile(_tarinfo(PUB_FILE, len(public)), io.BytesIO(public))
    except OSError as exc:
        raise AgiError(f"cannot write the bundle {out}: {exc.strerror or exc}", fix="check the folder exists and is writable") from None
    return ExportResult(out, len(files), out.stat().st_size, entries, missing, key is not None)


# -- verify ------------------------------------------------------------------------------------


@dataclass
class Verification:
    bundle: Path
    files: int = 0
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unsafe members, a missing SHA256SUMS, a bad signature
    signed: bool = False
    signature: str = "not signed"  # what was checked, in words
    signer: Any = None  # the Ed25519 public key the signature checked against (None: unsigned, or it did not check)
    app: str = ""
    run_id: str = ""
    entries: int = 0

    @property
    def ok(self) -> bool:
        return not (self.changed or self.added or self.removed or self.problems)

    def messages(self) -> list[str]:
        return ([f"changed: {name}" for name in self.changed] + [f"added (not in {SUMS_FILE}): {name}" for name in self.added]
                + [f"removed (in {SUMS_FILE}, not in the bundle): {name}" for name in self.removed] + self.problems)

    def to_json(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "ok": self.ok, "app": self.app, "run_id": self.run_id, "files": self.files,
                "cache_entries": self.entries, "changed": self.changed, "added": self.added, "removed": self.removed,
                "problems": self.problems, "signed": self.signed, "signature": self.signature}


def unsafe_name(name: str) -> str | None:
    """Why an archive member name must not be unpacked, or None."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in path.parts or "\\" in name:
        return "a path with '..'" if ".." in path.parts else "a path with a backslash"
    return None


def unsafe_kind(member: tarfile.TarInfo) -> str | None:
    """Why a member that is not a plain file or folder must not be unpacked, or None."""
    if member.isfile() or member.isdir():
        return None
    if member.issym():
        kind = "a symbolic link"
    elif member.islnk():
        kind = "a hard link"
    elif member.isfifo():
        kind = "a FIFO"
    elif member.ischr() or member.isblk():
        kind = "a device"
    else:
        kind = f"a member of type {member.type!r}"
    target = f" to {member.linkname!r}" if member.issym() or member.islnk() else ""
    return f"{kind}{target}, not a plain file or folder"


def members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, str | None]]:
    for member in tar:
        yield member, unsafe_name(member.name) or unsafe_kind(member)


def open_bundle(bundle: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(bundle, "r:*")
    except FileNotFoundError:
        raise AgiError(f"{bundle}: no such bundle", fix="check the path") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise AgiError(f"{bundle}: not a readable bundle ({exc})", fix="make it again with `agi runs export RUN --out FILE`") from None


def hash_member(tar: tarfile.TarFile, member: tarfile.TarInfo, sink: IO[bytes] | None = None) -> str:
    digest = hashlib.sha256()
    handle = tar.extractfile(member)
    assert handle is not None
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest()


def parse_sums(text: bytes) -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in text.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition(" ")
        sums[name[1:] if name.startswith(("*", " ")) else name] = digest.lower()
    return sums


def verify_bundle(bundle: Path, key: Path | None = None) -> Verification:
    """Check ``bundle``: see the module docstring. Never raises for a bad bundle's content: every
    problem is in the result (`Verification.ok`); raises `AgiError` when it cannot be read at all."""
    bundle = Path(bundle)
    result = Verification(bundle)
    found: dict[str, str] = {}
    special: dict[str, bytes] = {}
    manifest: bytes | None = None
    try:
        with open_bundle(bundle) as tar:
            for member, why in members(tar):
                if why:
                    result.problems.append(f"unsafe member {member.name!r}: {why}")
                    continue
                if member.isdir():
                    continue
                if member.name in found or member.name in special:
                    result.problems.append(f"member {member.name!r} appears more than once")
                    continue
                if member.name in (SUMS_FILE, SIG_FILE, PUB_FILE):
                    handle = tar.extractfile(member)
                    special[member.name] = handle.read() if handle else b""
                    continue
                if member.name == f"run/{MANIFEST_FILE}":
                    buffer = io.BytesIO()
                    found[member.name] = hash_member(tar, member, buffer)
                    manifest = buffer.getvalue()
                else:
                    found[member.name] = hash_member(tar, member)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise AgiError(f"{bundle}: the bundle is damaged ({exc})", fix="make it again with `agi runs export RUN --out FILE`") from None
    result.files = len(found)
    result.entries = sum(1 for name in found if name.startswith("cache/") and name.endswith(".entry"))
    if SUMS_FILE not in special:
        result.problems.append(f"no {SUMS_FILE} in the bundle: not an agi bundle, or it lost its checksums")
    else:
        sums = parse_sums(special[SUMS_FILE])
        result.changed = sorted(name for name in found if name in sums and sums[name] != found[name])
        result.added = sorted(name for name in found if name not in sums)
        result.removed = sorted(name for name in sums if name not in found)
    if manifest is None:
        result.problems.append(f"no run/{MANIFEST_FILE} in the bundle")
    else:
        try:
            data = json.loads(manifest)
            result.app, result.run_id = str(data["app"]["name"]), str(data["run_id"])
        except (ValueError, KeyError, TypeError):
            result.problems.append(f"run/{MANIFEST_FILE} is not a readable run record")
    _check_signature(result, special, key)
    return result


def _check_signature(result: Verification, special: dict[str, bytes], key: Path | None) -> None:
    from_key = None
    if key is not None:
        try:
            data = Path(key).read_bytes()
        except OSError as exc:
            raise AgiError(f"{key}: cannot read the key: {exc.strerror}", fix="check the path") from None
        from_key = public_from_bytes(data, str(key))
    if SIG_FILE not in special:
        if key is not None:
            result.problems.append(f"the bundle is not signed (no {SIG_FILE}), but --key was given")
        return
    result.signed = True
    if SUMS_FILE not in special:
        result.signature = "not checked: nothing to check it against"
        return
    if from_key is not None:
        public, source = from_key, f"the key {key}"
    elif PUB_FILE in special:
        public = public_from_bytes(special[PUB_FILE], f"{result.bundle}:{PUB_FILE}")
        source = f"the key embedded in the bundle ({PUB_FILE}): this shows the bundle is intact, not who signed it (use --key)"
    else:
        result.problems.append(f"the bundle is signed but carries no {PUB_FILE}: check it with --key PUBKEY")
        result.signature = "not checked: no key"
        return
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(special[SIG_FILE], special[SUMS_FILE])
    except InvalidSignature:
        result.signature = f"BAD: the signature does not match {source.split(':')[0]}"
        result.problems.append(f"bad signature: {SIG_FILE} was not made by {source.split(':')[0]} over this {SUMS_FILE}")
        return
    result.signature = f"good, checked against {source}"
    result.signer = public
