"""What a pack and its index are: their names and schema, the writer's limits, and `PackIndex`, one
pack's entries as its index describes them (the layout on disk: `agi_core.cache.packs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .entries import ENTRY_SCHEMA

__all__ = ["INDEX_SUFFIX", "MAX_PACK_BYTES", "MAX_PACK_ENTRIES", "PACK_SCHEMA", "PACK_SUFFIX", "PACKS", "SMALL_ENTRY_BYTES",
           "PackIndex"]

PACK_SCHEMA = "agi.cache.pack.v1"
PACKS = "packs"  # the folder of packs, in an app's cache folder
PACK_SUFFIX = ".pack"
INDEX_SUFFIX = ".index"
#: a writer flushes by itself past these (a pack stays small enough to read whole)
MAX_PACK_BYTES = 64 << 20
MAX_PACK_ENTRIES = 20_000
#: a pack whose entries are this small on average gets a checksum of its own (`PackIndex.pack_sha256`):
#: checking 100,000 tiny entries one by one was a tenth of a re-run; hashing big ones twice would cost more
SMALL_ENTRY_BYTES = 64 << 10


@dataclass(eq=False)
class PackIndex:
    """One pack as its index describes it: where it is, the fields its entries share, and its
    entries by position, column by column (a column parses 4x faster than a row per entry).
    Sparse columns (outputs, files, extra, replace) hold only the positions that have one."""

    folder: Path
    name: str
    common: dict[str, Any] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    created: list[float] = field(default_factory=list)
    replaced: set[int] = field(default_factory=set)  # stored by --refresh: wins over older copies
    outputs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    files: dict[int, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)  # each entry's authentication tag (`auth`); "" when it has none
    extra: dict[int, dict[str, Any]] = field(default_factory=dict)
    offsets: list[int] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict)  # key -> its position (the last, if a key is there twice)
    columns_sha256: str = ""  # the SHA-256 of the index's second line (checked when it is read)
    #: the writer's tag of the whole index (`auth.CacheKey.seal` of ``columns_sha256``): when it checks,
    #: every entry's key, checksum and outputs are authenticated at once; "" when the pack has none
    seal: str = ""
    #: the SHA-256 of the whole pack, for a pack of small entries (`SMALL_ENTRY_BYTES` on average): a
    #: reader of every entry of a sealed pack checks it once instead of each entry's; "" when none
    pack_sha256: str = ""

    @property
    def pack(self) -> Path:
        return self.folder / f"{self.name}{PACK_SUFFIX}"

    @property
    def index(self) -> Path:
        return self.folder / f"{self.name}{INDEX_SUFFIX}"

    @property
    def prefix(self) -> str:
        """The time part of its name: a rewrite keeps it, so the rewritten pack sorts where the old one did."""
        return self.name.split("-", 1)[0]

    def header(self, i: int) -> dict[str, Any]:
        """Entry ``i``'s header, as a single-file entry would have it (plus ``pack`` and ``offset``)."""
        header = {"schema": ENTRY_SCHEMA, "key": self.keys[i], "partition": self.partitions[i], "created": self.created[i],
                  "size": self.sizes[i], "sha256": self.sha256[i], "outputs": self.outputs.get(i) or [], "files": None,
                  **self.common, "tag": None, "replaced": False, "pack": self.name, "offset": self.offsets[i]}
        if i in self.files:
            header["files"] = self.files[i]
        if self.tags[i]:
            header["tag"] = self.tags[i]
        if i in self.replaced:
            header["replaced"] = True
        if i in self.extra:
            header.update(self.extra[i])
        return header

    def value(self, i: int, name: str, default: Any = None) -> Any:
        """One field of entry ``i``'s header without building the header (`header`): its own
        value where it differs from the pack's common fields, else the common one."""
        own = self.extra.get(i)
        if own is not None and name in own:
            return own[name]
        return self.common.get(name, default)

    def columns(self) -> dict[str, Any]:
        """The index's second line. ``created`` goes as milliseconds after the first entry's time:
        integers encode several times faster than floats, which made half of a flush's cost."""
        base = min(self.created, default=0.0)
        return {"key": self.keys, "size": self.sizes, "sha256": self.sha256, "partition": self.partitions, "tag": self.tags,
                "created_base": base,
                "created_ms": [round((c - base) * 1000) for c in self.created], "replace": sorted(self.replaced),
                "outputs": self.outputs, "files": self.files, "extra": self.extra,
                **({"pack_sha256": self.pack_sha256} if self.pack_sha256 else {})}
