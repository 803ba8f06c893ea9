"""What a host offers: OS, CPU architecture, Python, cores, memory, GPUs, C compiler, uv.

One shell script, one round trip: the probe prints ``key=value`` lines that `HostInfo.parse` reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..gpus import Gpu, parse_gpus, with_mig

if TYPE_CHECKING:
    from ..ssh import HostSession

__all__ = ["HostInfo", "probe"]

# POSIX sh with fallbacks: hosts differ, and a missing tool must read as "absent", not fail the probe.
PROBE_SCRIPT = r"""
echo "os=$(uname -s)"
echo "arch=$(uname -m)"
echo "hostname=$(hostname)"
echo "home=$HOME"
PY=${AGI_PYTHON:-$(command -v python3 || true)}
echo "python=$PY"
if [ -n "$PY" ]; then
  "$PY" -c 'import platform,sys; print("python_version=%d.%d.%d" % sys.version_info[:3]); print("libc=%s" % "-".join(platform.libc_ver()))' 2>/dev/null
fi
echo "cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
echo "memory_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo 2>/dev/null)"
echo "cc=$(command -v cc || command -v gcc || command -v clang || true)"
UV=$(command -v uv || true); [ -z "$UV" ] && [ -x "$AGI_ROOT/bin/uv" ] && UV="$AGI_ROOT/bin/uv"
echo "uv=$UV"
[ -n "$UV" ] && echo "uv_version=$("$UV" --version 2>/dev/null | awk '{print $2}')"
if command -v nvidia-smi >/dev/null 2>&1; then
  T=""; command -v timeout >/dev/null 2>&1 && T="timeout 30"
  E=$(mktemp 2>/dev/null || echo /tmp/agi-nvsmi.$$)
  $T nvidia-smi --query-gpu=index,name,memory.total,uuid --format=csv,noheader,nounits 2>"$E" | sed 's/^/gpu=/'
  [ -s "$E" ] && printf 'gpu_error=%s\n' "$(tr '\n' ' ' <"$E" | cut -c1-400)"
  $T nvidia-smi -L 2>/dev/null | sed 's/^/gpu_list=/'
  rm -f "$E"
fi
true
"""


@dataclass
class HostInfo:
    """A host's facts, as probed. Empty strings and zeros mean "absent"."""

    host: str
    os: str = ""
    arch: str = ""
    hostname: str = ""
    home: str = ""
    python: str = ""
    python_version: str = ""
    libc: str = ""
    cores: int = 0
    memory_gb: float = 0.0
    cc: str = ""
    uv: str = ""
    uv_version: str = ""
    gpus: list[str] = field(default_factory=list)  # "NVIDIA H100 80GB HBM3, 81559 MiB", one per GPU
    devices: list[Gpu] = field(default_factory=list)  # the same GPUs, with their index and UUID (MIG instances, not their GPU)
    gpu_error: str = ""  # what nvidia-smi wrote to stderr (a driver mismatch, one sick GPU)

    @classmethod
    def parse(cls, host: str, text: str) -> HostInfo:
        info = cls(host)
        listing = []
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if key == "gpu_list":  # `nvidia-smi -L`: its indentation says which lines are MIG instances
                listing.append(value.rstrip())
                continue
            value = value.strip()
            if not sep:
                continue
            if key == "gpu":
                info.devices += parse_gpus(value)
                info.gpus = [gpu.describe() for gpu in info.devices]
            elif key == "cores":
                info.cores = int(value) if value.isdigit() else 0
            elif key == "memory_kb":
                info.memory_gb = round(int(value) / 1024**2, 1) if value.isdigit() else 0.0
            elif key in cls.__dataclass_fields__:
                setattr(info, key, value)
        if listing:
            info.devices = with_mig(info.devices, "\n".join(listing))
            info.gpus = [gpu.describe() for gpu in info.devices]
        return info

    @property
    def python_minor(self) -> str:
        """``3.11`` from ``3.11.2``."""
        return ".".join(self.python_version.split(".")[:2])

    @property
    def glibc(self) -> tuple[int, int] | None:
        name, _, version = self.libc.partition("-")
        parts = version.split(".")
        if name == "glibc" and len(parts) >= 2 and all(p.isdigit() for p in parts[:2]):
            return int(parts[0]), int(parts[1])
        return None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def probe(session: HostSession, *, agi_root: str = "~/.agi", python: str | None = None) -> HostInfo:
    """Probe ``session``'s host in one command."""
    root = agi_root.replace("~", "$HOME", 1) if agi_root.startswith("~") else agi_root
    env = f'AGI_ROOT="{root}" ' + (f'AGI_PYTHON="{python}" ' if python else "")
    result = await session.run(f"{env}sh -c {_quote(PROBE_SCRIPT)}", what="probe", timeout=60)
    return HostInfo.parse(session.host, result.stdout)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
