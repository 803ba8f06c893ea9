"""Why a partition's cache key changed between two runs, in words (`agi runs show --why`).

Reads two runs' `RunKeys` (`agi_core.cache.keys`) and names each part of the key that differs: an
arg, the payload (down to the place inside it), an input file, the code, the kernel kind, or a
dependency, followed up to the change that caused it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .inputs import describe_change, folder_entries

if TYPE_CHECKING:
    from .keys import RunKeys

__all__ = ["explain", "payload_changes"]


def explain(pid: str, *, old: RunKeys, new: RunKeys, depth: int = 0, _seen: set[str] | None = None,
            old_payloads: Mapping[str, Any] | None = None, new_payloads: Mapping[str, Any] | None = None) -> list[str]:
    """Why ``pid``'s key differs between two runs: each part of the key that changed, following a
    changed dependency up to the change that caused it. Empty when the keys are equal.
    ``old_payloads`` / ``new_payloads`` (partition id → payload, from the runs' plans) let it name
    the place inside a payload that changed (``payload.files[3]``)."""
    if old.keys.get(pid) == new.keys.get(pid):
        return []
    seen = _seen if _seen is not None else set()
    seen.add(pid)
    indent = "  " * depth
    if pid not in old.parts:
        return [f"{indent}partition {pid} did not exist in the earlier run"]
    if pid not in new.parts:
        return [f"{indent}partition {pid} does not exist in the later run"]
    reasons: list[str] = []
    if old.format != new.format:
        reasons.append(f"{indent}the cache format changed ({old.format} → {new.format})")
    if old.code != new.code:
        reasons.append(f"{indent}the app's code changed (code hash {old.code[:12]} → {new.code[:12]})")
    if old.kernel != new.kernel:
        reasons.append(f"{indent}the kernel kind changed ({old.kernel} → {new.kernel})")
    old_reads, old_payload, old_deps, *old_inputs = old.parts[pid]
    new_reads, new_payload, new_deps, *new_inputs = new.parts[pid]
    if old_reads != new_reads:
        reasons.append(f"{indent}the args it reads changed ({_names(old_reads)} → {_names(new_reads)})")
    names = sorted(set(old.args) | set(new.args)) if new_reads is None else new_reads
    for name in names:
        before, after = old.args.get(name, "<absent>"), new.args.get(name, "<absent>")
        if before != after:
            reasons.append(f"{indent}args.{name} was {before!r}, is now {after!r}")
    if old_payload != new_payload:
        changed = payload_changes(old_payloads.get(pid, _UNKNOWN), new_payloads.get(pid, _UNKNOWN)) \
            if old_payloads is not None and new_payloads is not None else []
        reasons.append(f"{indent}its payload changed" + (f": {', '.join(changed[:5])}" if changed else "")
                       + (f" and {len(changed) - 5} more" if len(changed) > 5 else ""))
    reasons += [indent + line for line in _input_changes(old, new, old_inputs[0] if old_inputs else [],
                                                         new_inputs[0] if new_inputs else [])]
    if old_deps != new_deps:
        reasons.append(f"{indent}its dependencies changed ({', '.join(old_deps) or 'none'} → {', '.join(new_deps) or 'none'})")
    elif not reasons:  # only a dependency's key changed: say which, and why
        for dep in new_deps:
            if old.keys.get(dep) != new.keys.get(dep) and dep not in seen:
                reasons.append(f"{indent}dependency {dep} changed:")
                reasons += explain(dep, old=old, new=new, depth=depth + 1, _seen=seen, old_payloads=old_payloads,
                                   new_payloads=new_payloads) or [f"{indent}  (its key changed)"]
                break
    return reasons or [f"{indent}its key changed"]


_UNKNOWN = object()


def payload_changes(before: Any, after: Any, where: str = "payload", limit: int = 20) -> list[str]:
    """Where two payloads differ, as paths into them: ``payload.files[3] was 'a.txt', is now 'b.txt'``.

    >>> payload_changes({"files": ["a", "b"], "n": 1}, {"files": ["a", "c"], "n": 1})
    ["payload.files[1] was 'b', is now 'c'"]
    """
    if before is _UNKNOWN or after is _UNKNOWN:
        return []
    found: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if len(found) >= limit or a == b and type(a) is type(b):
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for name in sorted(set(a) | set(b), key=str):
                inner = f"{path}.{name}" if str(name).isidentifier() else f"{path}[{name!r}]"
                if name not in a:
                    found.append(f"{inner} was added")
                elif name not in b:
                    found.append(f"{inner} was removed")
                else:
                    walk(a[name], b[name], inner)
        elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
            for k in range(min(len(a), len(b))):
                walk(a[k], b[k], f"{path}[{k}]")
            if len(a) != len(b):
                found.append(f"{path} has {len(b)} items, had {len(a)}")
        elif a != b:
            found.append(f"{path} was {_short(a)}, is now {_short(b)}")

    walk(before, after, where)
    return found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _input_changes(old: RunKeys, new: RunKeys, old_declared: list[str], new_declared: list[str]) -> list[str]:
    """How a partition's declared inputs changed between two runs, file by file."""
    lines = []
    if old_declared != new_declared:
        gone, added = sorted(set(old_declared) - set(new_declared)), sorted(set(new_declared) - set(old_declared))
        lines += [f"it no longer declares input {path}" for path in gone] + [f"it now declares input {path}" for path in added]
    if old.inputs_mode != new.inputs_mode and set(old_declared) & set(new_declared):
        return [*lines, f"inputs are stamped another way ([cache] inputs = {old.inputs_mode!r} → {new.inputs_mode!r})"]
    for path in sorted(set(old_declared) & set(new_declared)):
        before, after = old.inputs.get(path), new.inputs.get(path)
        if before == after:
            continue
        if (before or "").startswith("folder:") and (after or "").startswith("folder:"):
            inside_old, inside_new = folder_entries(old.inputs, path), folder_entries(new.inputs, path)
            changed = [describe_change(name, inside_old.get(name), inside_new.get(name))
                       for name in sorted(set(inside_old) | set(inside_new)) if inside_old.get(name) != inside_new.get(name)]
            lines += changed or [describe_change(path, before, after)]
        else:
            lines.append(describe_change(path, before, after))
    return lines


def _names(reads: list[str] | None) -> str:
    return "all args" if reads is None else ", ".join(reads) or "no args"
