"""Cache entries authenticated by their owner: a keyed BLAKE2b tag per entry, under a key only the owner holds.

A checksum proves an entry is whole, not who wrote it: whoever can write to the share can write a
pickle with a matching checksum, and unpickling it runs their code. So every entry carries a tag,
``BLAKE2b(key, personalised by the schema; cache key | SHA-256 of the pickled result | output files)``
(BLAKE2's keyed mode is a MAC, RFC 7693 §2.9; three times cheaper here than HMAC-SHA256), and a
reader unpickles nothing whose tag does not check (`CacheKey.check`): such an entry is
*untrusted* and its partition is computed again. The SHA-256 is the one the index already holds
and the reader has just checked against the bytes, so the tag costs one MAC of ~100 bytes per
entry (about 0.5 µs), however large the result. Output files are covered by their checksums, so a
planted entry cannot name another file to restore, nor change one.

The key (32 random bytes) is made once, on the manager, by `ensure_key`: ``cache.key`` in agi's
state folder (``paths.state_dir``), mode 0600. It is never written to the share, a record, the
settings or a bundle. Workers read it with `worker_key`: from the file named by `KEY_ENV` (remote
workers: the cluster backends copy it next to their TLS files), else from the state folder (local
workers); the run's job names the key's id (`CacheKey.id`, a hash: it says nothing of the key), so
a worker holding another key (a warm cluster started before the key was replaced) stores nothing
and says why, instead of writing entries every later run would find untrusted.

>>> key = CacheKey(bytes(32))
>>> tag = key.tag("ab" * 32, "cd" * 32, None)
>>> key.check("ab" * 32, "cd" * 32, None, tag), key.check("ab" * 32, "cd" * 32, None, "0" * 64)
(True, False)
>>> key.check("ef" * 32, "cd" * 32, None, tag)  # the same result under another cache key
False
>>> NoKey("no key here").check("ab" * 32, "cd" * 32, None, tag)
False
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import paths

__all__ = ["KEY_ENV", "KEY_FILE", "UNTRUSTED", "CacheKey", "CacheKeyError", "NoKey", "ensure_key", "key_file", "read_key",
           "untrusted", "worker_key"]

#: the environment variable that names the key file on a worker (set by the cluster backends)
KEY_ENV = "AGI_CACHE_KEY_FILE"
KEY_FILE = "cache.key"
#: in a problem `CacheStore.load_many` gives: the entry's tag does not check (never unpickled)
UNTRUSTED = "untrusted"
#: BLAKE2b's personalisation (at most 16 bytes): a tag of another scheme or use never checks here
_SCHEMA = b"agi.cache.mac.2"
_KEY_BYTES = 32


class CacheKeyError(Exception):
    """No cache key to tag entries with (a worker without the key, or with another one)."""


@dataclass(frozen=True)
class CacheKey:
    """The owner's cache key. ``id``: a hash of it, safe to show and to send (`worker_key` compares it)."""

    secret: bytes = field(repr=False)
    #: the MAC keyed once: each tag copies it (a C call; an HMAC's copy is three Python objects)
    _keyed: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keyed", hashlib.blake2b(key=self.secret, digest_size=32, person=_SCHEMA))

    @property
    def id(self) -> str:
        return hashlib.sha256(b"agi cache key id\0" + self.secret).hexdigest()[:16]

    def tag(self, key: str, sha256: str, outputs: Sequence[dict[str, Any]] | None) -> str:
        """The tag of the entry of cache key ``key`` whose pickled result has SHA-256 ``sha256``."""
        mac = self._keyed.copy()
        mac.update(_message(key, sha256, outputs))
        return mac.hexdigest()

    def check(self, key: str, sha256: str, outputs: Sequence[dict[str, Any]] | None, tag: Any) -> bool:
        """True when ``tag`` is this key's tag of that entry (compared in constant time)."""
        return isinstance(tag, str) and hmac.compare_digest(self.tag(key, sha256, outputs), tag)

    def seal(self, columns_sha256: str) -> str:
        """The tag of a whole pack index, whose second line (every entry's key, result checksum,
        output files and tag) has SHA-256 ``columns_sha256``: one MAC authenticates them all, so
        a reader of 100,000 hits checks a few seals instead of 100,000 tags. (``pack`` cannot
        begin a tag's message: those begin with a hex cache key.)"""
        mac = self._keyed.copy()
        mac.update(b"pack\0" + columns_sha256.encode() + b"\0")
        return mac.hexdigest()

    def check_seal(self, columns_sha256: str, seal: Any) -> bool:
        """True when ``seal`` is this key's seal of an index whose columns have that SHA-256."""
        return isinstance(seal, str) and bool(seal) and hmac.compare_digest(self.seal(columns_sha256), seal)


@dataclass(frozen=True)
class NoKey:
    """Stands for a key this process does not have: it checks no entry and tags none (it raises
    `CacheKeyError` saying ``reason``, which a worker notes as the reason a result was not cached)."""

    reason: str
    id: str = ""

    def tag(self, key: str, sha256: str, outputs: Sequence[dict[str, Any]] | None) -> str:
        raise CacheKeyError(self.reason)

    def check(self, key: str, sha256: str, outputs: Sequence[dict[str, Any]] | None, tag: Any) -> bool:
        return False

    def seal(self, columns_sha256: str) -> str:
        raise CacheKeyError(self.reason)

    def check_seal(self, columns_sha256: str, seal: Any) -> bool:
        return False


def _message(key: str, sha256: str, outputs: Sequence[dict[str, Any]] | None) -> bytes:
    """What a tag covers after the schema: the cache key, the result's SHA-256, the output files (path, size, SHA-256)."""
    if not outputs:
        return f"{key}\0{sha256}\0".encode()
    files = json.dumps([[o.get("path"), o.get("size"), o.get("sha256")] for o in outputs], separators=(",", ":"))
    return f"{key}\0{sha256}\0{files}".encode()


def untrusted(where: str, key: str, why: str = "its tag does not check under this user's cache key") -> str:
    """The problem of an entry that is not unpickled because it is not authenticated."""
    return f"{where}#{key[:16]}…: {UNTRUSTED}: {why} (written by someone else, or before entries were authenticated)"


def key_file() -> Path:
    """Where this user's cache key lives on the manager: ``<state>/cache.key``."""
    return paths.state_dir(KEY_FILE)


def read_key(path: Path) -> CacheKey:
    """The key in ``path``. Raises `CacheKeyError` naming the file when it is unreadable or not a key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CacheKeyError(f"the cache key {path} cannot be read ({exc.strerror})") from None
    if len(data) != _KEY_BYTES:
        raise CacheKeyError(f"the cache key {path} is not a key ({len(data)} bytes, not {_KEY_BYTES})")
    return CacheKey(data)


def ensure_key(path: Path | None = None) -> CacheKey:
    """This user's cache key, made on first use (32 random bytes, 0600, in a 0700 folder). Two
    processes making it at once agree: the file is linked into place only if none is there."""
    path = path or key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(_KEY_BYTES))
            try:
                os.link(tmp, path)  # fails if another process made it first: then theirs is the key
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    return read_key(path)


def worker_key(expected: str = "") -> CacheKey | NoKey:
    """The key a worker tags and checks entries with: from the file `KEY_ENV` names, else the
    state folder's. ``expected``: the manager's key id (`CacheKey.id`); a worker holding another
    key, or none, gets a `NoKey` saying so and how to fix it."""
    named = os.environ.get(KEY_ENV)
    path = Path(named).expanduser() if named else key_file()
    try:
        key = read_key(path)
    except CacheKeyError as exc:
        return NoKey(f"{exc}: this worker cannot authenticate cache entries; restart the cluster "
                     "(agi cluster down APP, then agi cluster up APP) so that it gets the manager's key", expected)
    if expected and key.id != expected:
        return NoKey(f"this worker's cache key {path} (id {key.id}) is not the manager's (id {expected}); restart the cluster "
                     "(agi cluster down APP, then agi cluster up APP) so that it gets the manager's key", expected)
    return key
