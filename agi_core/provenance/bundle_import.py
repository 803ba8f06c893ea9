"""Importing a run bundle (`agi runs import`): verify it (`bundle.verify_bundle`), then unpack its
run into ``<share>/runs/<app>/<run_id>/`` (never over an existing run) and its cache entries into
``<share>/cache/<app>/`` (never over an existing entry). Everything is unpacked into a staging
folder first and renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import AgiError
from .bundle import SUMS_FILE, Verification, hash_member, members, open_bundle, parse_sums, unsafe_name, verify_bundle

__all__ = ["ImportResult", "import_bundle"]


@dataclass
class ImportResult:
    run_dir: Path
    app: str
    run_id: str
    verification: Verification
    entries_added: int = 0
    entries_kept: int = 0  # already in the cache: left as they were


def _safe_component(value: str, what: str) -> str:
    if not value or value in (".", "..") or value.startswith(".") or "/" in value or "\\" in value or "\0" in value:
        raise AgiError(f"the bundle's {what} {value!r} cannot name a folder", fix="the bundle's manifest is not one agi wrote")
    return value


def import_bundle(bundle: Path, share: Path, key: Path | None = None) -> ImportResult:
    """Verify ``bundle``, then unpack its run into ``<share>/runs/<app>/<run_id>/`` and its cache
    entries into ``<share>/cache/<app>/``. Refuses an existing run folder; keeps existing entries."""
    bundle, share = Path(bundle), Path(share)
    check = verify_bundle(bundle, key)
    if not check.ok:
        shown = check.messages()
        raise AgiError(f"{bundle} failed verification, nothing imported: " + "; ".join(shown[:5])
                       + (f"; … {len(shown) - 5} more" if len(shown) > 5 else ""),
                       fix=f"see every problem with `agi runs verify {bundle}`")
    app = _safe_component(check.app, "app name")
    run_id = _safe_component(check.run_id, "run id")
    target = share / "runs" / app / run_id
    if target.exists():
        raise AgiError(f"run {run_id} of {app} is already on this share: {target}",
                       fix="it was imported before; remove that folder first to import it again")
    sums = {}
    staging = share / "runs" / f".tmp-import-{secrets.token_hex(4)}"
    result = ImportResult(target, app, run_id, check)
    try:
        staging.mkdir(parents=True)
        with open_bundle(bundle) as tar:
            for member, why in members(tar):
                if why:
                    raise AgiError(f"{bundle}: unsafe member {member.name!r}: {why}", fix="do not import this bundle")
                if member.isdir():
                    continue
                if member.name == SUMS_FILE:
                    handle = tar.extractfile(member)
                    sums = parse_sums(handle.read() if handle else b"")
                    continue
                if not member.name.startswith(("run/", "cache/")):
                    continue
                dest = staging / member.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "wb") as sink:
                    digest = hash_member(tar, member, sink)
                os.utime(dest, (member.mtime, member.mtime))
                if sums and sums.get(member.name) != digest:  # the bundle changed since it was verified
                    raise AgiError(f"{bundle}: {member.name} changed while it was imported", fix="import it again")
        _place_entries(staging / "cache", share / "cache" / app, result)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging / "run", target)
        except OSError as exc:
            raise AgiError(f"cannot create {target}: {exc.strerror}", fix="it may have appeared meanwhile; check the share") from None
    except OSError as exc:
        raise AgiError(f"cannot import into {share}: {exc.strerror or exc}", fix="check the share is writable") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _place_entries(staged: Path, cache: Path, result: ImportResult) -> None:
    """Write the staged cache entries that check into ``cache`` as one pack (each output folder
    moved into place first), never over an entry already there. An entry that does not check is
    not imported (verification passed, so it was stored that way)."""
    from ..cache import CacheStore
    from ..cache.entries import CorruptEntry, check_body, decode_single
    from ..cache.packs import PackWriter

    if not staged.is_dir():
        return
    store = CacheStore(cache)
    paths = {entry.name[: -len(".entry")]: entry for entry in sorted(staged.glob("*/*.entry"))}
    present = store.existing(paths)
    writer = PackWriter(store.packs_dir)
    for key, entry in paths.items():
        if key in present:
            result.entries_kept += 1
            continue
        try:
            header, body = decode_single(entry, entry.read_bytes())
            check_body(str(entry), header, body)
        except CorruptEntry:
            continue
        named = header.get("files")
        if named and unsafe_name(str(named)) is None and "/" not in str(named):
            folder, final = entry.parent / str(named), cache / key[:2] / str(named)
            if folder.is_dir() and not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(folder, final)
        meta = {k: v for k, v in header.items()
                if k not in ("schema", "key", "partition", "created", "size", "sha256", "outputs", "files", "tag", "replaced")}
        writer.add(key, body, partition=str(header.get("partition", "")), created=header.get("created"),
                   outputs=header.get("outputs") or [], files=named, tag=header.get("tag"), **meta)
        result.entries_added += 1
    writer.flush()  # a key another run stored meanwhile is in both packs: same key, same content
