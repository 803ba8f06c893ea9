"""The result cache: partition results on the share, by content key, reused across runs.

`plan_keys` gives every partition of a plan its key before anything runs; workers store what
they compute straight into the `CacheStore` (``<share>/cache/<app>/``); the next run loads every
entry whose key it has, and computes only the rest. `explain` says why a key changed.
"""

from .keys import CACHE_FORMAT, RunKeys, explain, kernel_kind_for_mode, plan_keys
from .store import CacheStore, CacheView, CorruptEntry, Entry, EntryInfo, EntryWriter

__all__ = ["CACHE_FORMAT", "CacheStore", "CacheView", "CorruptEntry", "Entry", "EntryInfo", "EntryWriter", "RunKeys", "explain",
           "kernel_kind_for_mode", "plan_keys"]
