"""The names of a run bundle's files (the layout: `agi_core.provenance.bundle`): the checksum list,
its signature and public key, the run files it carries, and the size bundles are read in.
"""

from __future__ import annotations

from .writer import HEARTBEAT_FILE, LOG_FILE, MANIFEST_FILE

__all__ = ["CHUNK", "PUB_FILE", "RUN_FILES", "SIG_FILE", "SUMS_FILE"]

SUMS_FILE = "SHA256SUMS"
SIG_FILE = "SHA256SUMS.sig"
PUB_FILE = "SHA256SUMS.pub"
#: the files of a run folder a bundle carries when they exist (besides out/)
RUN_FILES = (MANIFEST_FILE, "plan.json", "cache_keys.json", LOG_FILE, HEARTBEAT_FILE, "gantt.png", "load.png", "dag.png",
             "cache.png", "report.pdf")
CHUNK = 1 << 20  # bytes read at a time when hashing a file
