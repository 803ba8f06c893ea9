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

from .bundle_export import ExportResult, export_run
from .bundle_layout import PUB_FILE, RUN_FILES, SIG_FILE, SUMS_FILE
from .bundle_verify import Verification, hash_member, members, open_bundle, parse_sums, unsafe_kind, unsafe_name, verify_bundle

__all__ = ["PUB_FILE", "RUN_FILES", "SIG_FILE", "SUMS_FILE", "ExportResult", "Verification", "export_run", "hash_member",
           "members", "open_bundle", "parse_sums", "unsafe_kind", "unsafe_name", "verify_bundle"]
