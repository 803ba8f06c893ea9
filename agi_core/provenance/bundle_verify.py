"""`verify_bundle`: every checksum of a run bundle (naming each file changed, added or removed), its
members (no links, devices or names that leave the folder) and its signature; the helpers that
`bundle_import` shares.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..base.errors import AgiError
from .bundle_layout import CHUNK, PUB_FILE, SIG_FILE, SUMS_FILE
from .signing import public_from_bytes
from .writer import MANIFEST_FILE

__all__ = ["Verification", "hash_member", "members", "open_bundle", "parse_sums", "unsafe_kind", "unsafe_name", "verify_bundle"]


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
    while chunk := handle.read(CHUNK):
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
