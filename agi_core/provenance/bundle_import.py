"""Importing a run bundle (`agi runs import`): verify it (`bundle.verify_bundle`), then unpack its
run into ``<share>/runs/<app>/<run_id>/`` (never over an existing run) and, when asked
(``with_cache``), its cache entries into ``<share>/cache/<app>/`` (never over an existing entry).
Everything is unpacked into a staging folder first and renamed into place, so a failure leaves
nothing half-written.

Cache entries are pickles: loading one runs whatever code its maker put in it. So they come in only
from a bundle whose signature checks against a key the user trusts (`trust`), and are then
authenticated under the local cache key (`agi_core.cache.auth`); from any other bundle the run is
imported without them, and `ImportResult.cache_refused` says why.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import AgiError
from .bundle import SUMS_FILE, Verification, hash_member, members, open_bundle, parse_sums, unsafe_name, verify_bundle
from .trust import TrustedKeys, fingerprint, openssh_line

__all__ = ["ImportResult", "import_bundle"]


@dataclass
class ImportResult:
    run_dir: Path
    app: str
    run_id: str
    verification: Verification
    entries_added: int = 0
    entries_kept: int = 0  # already in the cache: left as they were
    entries_left: int = 0  # in the bundle, not imported (see cache_refused)
    cache_refused: str | None = None  # why the bundle's cache entries were not imported, when it has some


def _safe_component(value: str, what: str) -> str:
    if not value or value in (".", "..") or value.startswith(".") or "/" in value or "\\" in value or "\0" in value:
        raise AgiError(f"the bundle's {what} {value!r} cannot name a folder", fix="the bundle's manifest is not one agi wrote")
    return value


def cache_refusal(check: Verification, with_cache: bool, trusted: TrustedKeys) -> str | None:
    """Why the cache entries of a verified bundle must not be imported, or None when they may."""
    if not check.entries:
        return None
    if not with_cache:
        return "they come in only with --with-cache (from a bundle signed by a key you trust)"
    if not check.signed or check.signer is None:
        return "the bundle is not signed, so nothing says who made its entries (pickles, which run code when loaded)"
    if trusted.find(check.signer) is None:
        return (f"the bundle is signed by the key {fingerprint(openssh_line(check.signer))}, which you do not trust "
                f"(trust it with `agi keys trust KEYFILE.pub` if you know whose it is)")
    return None


def import_bundle(bundle: Path, share: Path, key: Path | None = None, *, with_cache: bool = False,
                  trusted: TrustedKeys | None = None) -> ImportResult:
    """Verify ``bundle``, then unpack its run into ``<share>/runs/<app>/<run_id>/`` and, with
    ``with_cache`` and a signature by a ``trusted`` key (default: the user's `TrustedKeys`), its
    cache entries into ``<share>/cache/<app>/``. Refuses an existing run folder; keeps existing entries."""
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
    result.cache_refused = cache_refusal(check, with_cache, trusted or TrustedKeys())
    if result.cache_refused is not None:
        result.entries_left = check.entries
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
                if not member.name.startswith(("run/", "cache/")) or (result.cache_refused and member.name.startswith("cache/")):
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
    from ..cache.auth import ensure_key
    from ..cache.entries import CorruptEntry, check_body, decode_single
    from ..cache.packs import PackWriter

    if not staged.is_dir():
        return
    local = ensure_key()  # the entries are authenticated here, under this user's key
    store = CacheStore(cache, key=local)
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
        outputs = header.get("outputs") or []
        writer.add(key, body, partition=str(header.get("partition", "")), created=header.get("created"), outputs=outputs,
                   files=named, tag=local.tag(key, str(header["sha256"]), outputs), sha256=str(header["sha256"]), **meta)
        result.entries_added += 1
    writer.flush()  # a key another run stored meanwhile is in both packs: same key, same content
