"""Pack files: many cache entries written by one worker in one go, found through one small index.

One file per entry cost a file creation per partition (0.1-1.6 ms on a busy disk), which made
100,000 tiny partitions several times slower with the cache than without. A worker now buffers
the entries it computes and writes them together::

    packs/<name>.pack    the pickled results, back to back
    packs/<name>.index   line 1: JSON header (schema, pack size, count, the fields all entries
                         share, SHA-256 of line 2); line 2: the entries, column by column
                         (key, size, sha256, partition, tag, created in ms after created_base;
                         sparse: replace, outputs, files, extra; and, for a pack of small
                         entries, pack_sha256: the whole pack's), as one JSON object (`PackIndex`)

``<name>`` is ``<16 hex digits of time_ns>-<pid>-<random>-<sequence>``: unique per writer without
any lock, and sortable by when it was written. The pack is written under a ``.tmp-`` name and
renamed into place, then the index the same way: an index exists only once its pack is whole, and
a reader lists indexes only. A writer killed half-way leaves at most a ``.tmp-`` file (named for
its pid and host: `tempnames`) or a pack without an index, which no reader sees and `agi cache gc`
removes. Nothing is ever rewritten in
place: dropping entries (`rewrite_without`) writes a new pack of the others, renames it in, then
unlinks the old index and pack, so a reader sees the old pack, the new one, or both (same key,
same content). Only renames and unlinks are used: safe on NFS, where locks are not.

Each entry has its authentication tag (column ``tag``: a MAC under its owner's key, `auth`),
which `CacheStore` checks before it unpickles anything; this module only keeps it. A worker's
pack also has a ``seal`` in its index header (`auth.CacheKey.seal` of the columns' SHA-256),
which authenticates all its entries in one check; packs that copy entries (gc's merge and
rewrite, bundle imports) have none, so their entries are checked tag by tag. A reader of most
entries of a sealed pack that has ``pack_sha256`` checks the pack's checksum once instead of each
entry's (the seal vouches for the columns, the checksum among them).

>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> writer = PackWriter(folder)
>>> location = writer.add("ab" * 32, b"result bytes", partition="p1", run_id="r1")
>>> pack = writer.flush()
>>> index = read_index(pack.with_suffix(INDEX_SUFFIX))
>>> index.header(0)["partition"], index.header(0)["run_id"], location == str(pack)
('p1', 'r1', True)
"""

from __future__ import annotations

from .pack_format import INDEX_SUFFIX, MAX_PACK_BYTES, MAX_PACK_ENTRIES, PACK_SCHEMA, PACK_SUFFIX, PACKS, PackIndex
from .pack_reader import list_indexes, read_bodies, read_index
from .pack_rewrite import merge, rewrite_without
from .pack_writer import PackWriter

__all__ = ["INDEX_SUFFIX", "MAX_PACK_BYTES", "MAX_PACK_ENTRIES", "PACK_SCHEMA", "PACK_SUFFIX", "PACKS", "PackIndex", "PackWriter",
           "list_indexes", "merge", "read_bodies", "read_index", "rewrite_without"]
