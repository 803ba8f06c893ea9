"""The GPUs this machine has, as ``nvidia-smi`` lists them (run with a timeout: a missing, broken or
hanging tool means none), MIG instances included.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

from .model import Gpu, GpuProbe
from .names import NVIDIA_SMI, NVIDIA_SMI_LIST, NVIDIA_SMI_TIMEOUT

__all__ = ["local_gpus", "parse_gpu_list", "parse_gpus", "probe_gpus", "with_mig"]


def parse_gpus(text: str) -> list[Gpu]:
    """The GPUs in ``nvidia-smi --query-gpu=index,name,memory.total[,uuid] --format=csv,noheader,nounits``
    output; lines that do not read as one are ignored (``[N/A]`` memory counts as 0): one GPU that
    nvidia-smi cannot read does not hide the others."""
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        uuid = parts.pop() if len(parts) >= 4 and parts[-1].startswith(("GPU-", "MIG-")) else ""
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        memory = parts[-1].split()[0] if parts[-1] else ""
        gpus.append(Gpu(int(parts[0]), ", ".join(parts[1:-1]), int(memory) if memory.isdigit() else 0, uuid))
    return gpus


_LIST_GPU = re.compile(r"^GPU (\d+): (.*?) \(UUID: (GPU-[^)\s]+)\)")
_LIST_MIG = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[^)\s]+)\)")


def parse_gpu_list(text: str) -> dict[int, list[tuple[str, str]]]:
    """The MIG instances in ``nvidia-smi -L`` output: GPU index → [(profile, MIG UUID)], for the
    GPUs that have some.

    >>> parse_gpu_list("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5d5b)\\n  MIG 3g.40gb     Device  0: (UUID: MIG-c6d4)\\n")
    {0: [('3g.40gb', 'MIG-c6d4')]}
    """
    found: dict[int, list[tuple[str, str]]] = {}
    parent = None
    for line in text.splitlines():
        if (gpu := _LIST_GPU.match(line)) is not None:
            parent = int(gpu.group(1))
        elif (mig := _LIST_MIG.match(line)) is not None and parent is not None:
            found.setdefault(parent, []).append((mig.group(1), mig.group(3)))
    return found


def with_mig(gpus: Sequence[Gpu], listing: str) -> list[Gpu]:
    """``gpus`` with each MIG-enabled GPU replaced by its MIG instances (``nvidia-smi -L``): a CUDA
    process sees one MIG instance, so each is a GPU a worker can own. Memory: the profile's
    (``3g.40gb``: 40 GiB)."""
    migs = parse_gpu_list(listing)
    out: list[Gpu] = []
    for gpu in gpus:
        for profile, uuid in migs.get(gpu.index, ()):
            size = re.search(r"(\d+)gb$", profile)
            out.append(Gpu(gpu.index, f"{gpu.name} MIG {profile}", int(size.group(1)) * 1024 if size else 0, uuid))
        if gpu.index not in migs:
            out.append(gpu)
    return out


def _nvidia_smi(args: Sequence[str], timeout: float) -> tuple[str, str]:
    """stdout and what went wrong ("" when nothing): stderr, the exit code, a timeout."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "", f"`{' '.join(args)}` did not answer within {timeout:g} s (a wedged driver?)"
    except OSError as exc:
        return "", f"`{args[0]}` could not run: {exc}"
    said = " ".join((done.stderr.strip() or done.stdout.strip()).split())[:500]
    return done.stdout, (f"`{' '.join(args)}` exited with {done.returncode}: {said}" if done.returncode else "")


def probe_gpus(timeout: float = NVIDIA_SMI_TIMEOUT) -> GpuProbe:
    """This machine's GPUs (nvidia-smi, at most ``timeout`` seconds), with MIG instances, and
    what nvidia-smi said when it failed. Its output is read whatever its exit code: one sick GPU
    (``Unable to determine the device handle``) makes it exit non-zero, and the others still count.
    Imports no GPU library."""
    if shutil.which(NVIDIA_SMI[0]) is None:
        return GpuProbe([])
    out, error = _nvidia_smi(NVIDIA_SMI, timeout)
    gpus = parse_gpus(out)
    if gpus:
        listing, list_error = _nvidia_smi(NVIDIA_SMI_LIST, timeout)
        gpus, error = with_mig(gpus, listing), error or list_error
    return GpuProbe(gpus, error)


def local_gpus(timeout: float = NVIDIA_SMI_TIMEOUT) -> list[Gpu]:
    """This machine's GPUs (`probe_gpus`); [] when there is none or the tool fails."""
    return probe_gpus(timeout).gpus
