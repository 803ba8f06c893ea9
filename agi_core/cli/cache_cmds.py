"""``agi cache list|show|verify|clear|gc``: the result cache on a share (``<share>/cache/<app>/``)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from .cache_gc_cmd import cache_gc
from .cache_options import DURATION, SHARE_OPTION, SIZE, access_for, ago, app_name, share_for, unfinished_line, when
from .options import apps_path_option, env_for, json_option
from .output import console, print_json, table

__all__ = ["DURATION", "SIZE", "ago", "app_name", "cache_group", "share_for", "unfinished_line", "when"]


@click.group("cache")
@apps_path_option
def cache_group() -> None:
    """The result cache on the share: list, inspect, verify, clear, and collect garbage.

    \b
    Entries live under <share>/cache/APP/, one per partition result, by content key, written
    by the workers in pack files; a run reuses every entry whose key it computes (see docs/cache.md).
    """


@cache_group.command("list")
@click.argument("app", required=False)
@apps_path_option
@SHARE_OPTION
@click.option("--limit", "-n", default=50, show_default=True, help="With APP: show the most recently used entries only (0: all).")
@json_option
@click.pass_context
def cache_list(ctx: click.Context, app: str | None, share: Path | None, limit: int, as_json: bool) -> None:
    """Summarise the cache of every app, or list APP's entries (most recently used first)."""
    from ..base.quantities import format_size
    from ..cache import CacheStore
    from ..cache.maintenance import cache_apps, unfinished_writes

    root = share_for(ctx, app, share)
    if app:
        name = app_name(ctx, app, share)
        store = CacheStore.for_app(root, name)
        infos = sorted(store.entries(), key=lambda i: i.used, reverse=True)
        shown = infos[: limit or None]
        if as_json:
            print_json([{"key": i.key, "partition": i.header.get("partition"), "size": i.size, "used": i.used,
                         "outputs": len(i.header.get("outputs", ())), "run_id": i.header.get("run_id"),
                         "kernel": i.header.get("kernel"), "path": str(i.path)} for i in shown])
            return
        unfinished = unfinished_writes(store)
        if not infos:
            console(stderr=True).print(f"no cache entries of {escape(name)} under {escape(str(store.root))}")
            if unfinished:
                console().print(unfinished_line(unfinished))
            return
        total = sum(i.size for i in infos)
        table(f"{len(infos)} entries of {name}, {format_size(total)}, in {store.root}",
              ["key", "partition", "size", "last used", "outputs", "stored by run"],
              ([i.key[:12], i.header.get("partition", ""), format_size(i.size), ago(i.used),
                len(i.header.get("outputs", ())) or "", i.header.get("run_id", "")] for i in shown))
        if len(shown) < len(infos):
            console().print(f"… {len(infos) - len(shown)} less recently used entries (--limit 0 shows every one)")
        if unfinished:
            console().print(unfinished_line(unfinished))
        return
    summary = []
    for name in cache_apps(root):
        store = CacheStore.for_app(root, name)
        infos = list(store.entries())
        used = [i.used for i in infos]
        unfinished = unfinished_writes(store)
        summary.append({"app": name, "entries": len(infos), "size": sum(i.size for i in infos),
                        "oldest_use": min(used, default=None), "newest_use": max(used, default=None),
                        "path": str(store.root), "unfinished_writes": len(unfinished),
                        "unfinished_size": sum(u.size for u in unfinished),
                        "unfinished_gone": sum(u.alive is False for u in unfinished)})
    if as_json:
        print_json(summary)
        return
    if not summary:
        console(stderr=True).print(f"no cache under {escape(str(root / 'cache'))}")
        return
    table(f"cache under {root / 'cache'}", ["app", "entries", "size", "oldest use", "newest use", "unfinished"], (
        [s["app"], s["entries"], format_size(s["size"]), ago(s["oldest_use"]), ago(s["newest_use"]),
         f"{s['unfinished_writes']} ({format_size(s['unfinished_size'])})" if s["unfinished_writes"] else ""] for s in summary))
    if any(s["unfinished_gone"] for s in summary):
        console().print("unfinished writes whose writer is gone take space until `agi cache gc` removes them")


@cache_group.command("show")
@click.argument("key")
@click.option("--app", default=None, help="Look in APP's cache only (default: every app's on the share).")
@apps_path_option
@SHARE_OPTION
@json_option
@click.pass_context
def cache_show(ctx: click.Context, key: str, app: str | None, share: Path | None, as_json: bool) -> None:
    """Show one entry's header, and whether it loads and matches its checksums.

    KEY is a key or a unique prefix of one (at least 4 characters). Checking does not count as a use.
    """
    from ..base.errors import AgiError
    from ..base.quantities import format_size
    from ..cache import CacheStore
    from ..cache.maintenance import cache_apps, check_entry, unfinished_writes

    if len(key) < 4:
        raise AgiError(f"give at least 4 characters of the key, not {key!r}", fix="copy it from `agi cache list APP`")
    root = share_for(ctx, app, share)
    names = [app_name(ctx, app, share)] if app else cache_apps(root)
    found = []
    for name in names:
        store = CacheStore.for_app(root, name)
        found += [(name, store, k) for k in store.matching(key)]
    if not found:
        raise AgiError(f"no cache entry with a key starting with {key!r} under {root / 'cache'}"
                       + (f" (app {names[0]})" if app else ""), fix="list the entries with `agi cache list APP`")
    if len(found) > 1:
        raise AgiError(f"{len(found)} cache entries have a key starting with {key!r}: "
                       + ", ".join(f"{k[:12]} ({name})" for name, _, k in found[:5]), fix="give more characters of the key")
    name, store, full = found[0]
    info = store.find(full)
    problem = check_entry(store, full)
    header = info.header
    unfinished = unfinished_writes(store)
    if as_json:
        print_json({"app": name, "key": full, "path": str(info.path), "size": info.size, "used": info.used, "header": header,
                    "ok": problem is None, "problem": problem, "unfinished_writes": [u.to_json() for u in unfinished]})
        return
    out = console()
    out.print(f"[bold]{escape(name)}[/] cache entry {full}")
    out.print(f"partition {escape(str(header.get('partition', '-')))}  stored by run {escape(str(header.get('run_id') or '-'))}  "
              f"kernel {escape(str(header.get('kernel') or '-'))}  worker {escape(str(header.get('worker') or '-'))}")
    out.print(f"created {when(header.get('created'))}  last used {when(info.used)} ({ago(info.used)})")
    outputs = header.get("outputs", ())
    out.print(f"size {format_size(info.size)} (result {format_size(int(header.get('size', 0)))}"
              + (f", {len(outputs)} output file{'s' if len(outputs) != 1 else ''}" if outputs else "") + ")"
              + f"  sha256 {header.get('sha256', '-')}")
    for item in outputs:
        out.print(f"output: {escape(item['path'])}  {format_size(item.get('size', 0))}  sha256 {str(item.get('sha256', ''))[:16]}…")
    out.print(f"path: {escape(str(info.path))}" + (f" (offset {header['offset']})" if "offset" in header else ""))
    if problem is None:
        out.print("[green]check: ok[/] (loads, and the result and outputs match their checksums)")
    else:
        verdict = "untrusted" if ": untrusted: " in problem else "corrupt"
        out.print(f"[red]check: {verdict}[/]: {escape(problem)} (a run would not use it; it recomputes the partition)")
    if unfinished:
        out.print(f"{escape(name)}: {unfinished_line(unfinished)}")


@cache_group.command("verify")
@click.argument("app", required=False)
@apps_path_option
@SHARE_OPTION
@click.option("--sample", "-n", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Also recompute N entries, chosen at random, with the app's work() in this process, and compare "
                   "each result with the cached one (as `agi run --audit` does for hits).")
@click.option("--seed", type=int, default=None, help="The seed that chooses the sample (default: a fresh one; it is printed).")
@json_option
@click.pass_context
def cache_verify(ctx: click.Context, app: str | None, share: Path | None, sample: int, seed: int | None, as_json: bool) -> None:
    """Check every cache entry of APP, or of every app (each result and output file against its
    checksum, and every pack index); with --sample N (APP only), recompute N of them.

    \b
    An entry is recomputed from the run that stored it: its plan (the payload), its args and mode,
    and its dependencies' results from the cache. Entries whose run record is gone, or whose key
    today's code would not give, are reported as not verifiable. Nothing is changed: replace a
    mismatching entry with `agi run APP --refresh ID`. Exits non-zero when an entry is corrupt,
    differs when recomputed, or fails to recompute.
    """
    from ..run.verifying import verify_cache
    from .cache_verify_view import print_verify

    if app is None:
        if sample:
            raise click.UsageError("--sample needs an APP: its work() recomputes the entries")
        _verify_every_app(ctx, share_for(ctx, None, share), as_json)
        return
    root = share_for(ctx, app, share)
    env = env_for(ctx, app) if sample else None  # checking alone needs only the app's name (and --share)
    status = console(stderr=True).status("verifying", spinner="dots") if not as_json else None
    if status is not None:
        status.start()
    try:
        report = verify_cache(app_name(ctx, app, share), root, env=env, sample=sample, seed=seed,
                              progress=status.update if status is not None else None, access=access_for(ctx, app))
    finally:
        if status is not None:
            status.stop()
    if as_json:
        print_json(report.to_json())
    else:
        print_verify(report)
    if not report.ok:
        raise SystemExit(1)


def _verify_every_app(ctx: click.Context, root: Path, as_json: bool) -> None:
    """`agi cache verify` without APP: the integrity of every app's entries and indexes."""
    from ..cache import CacheStore
    from ..cache.maintenance import cache_apps, verify_store

    apps = cache_apps(root)
    report = []
    for name in apps:
        checked, problems = verify_store(CacheStore.for_app(root, name))
        report.append({"app": name, "entries": checked, "problems": [{"key": k, "problem": p} for k, p in problems]})
    bad = sum(len(r["problems"]) for r in report)
    if as_json:
        print_json({"share": str(root), "apps": report, "ok": bad == 0})
    else:
        out = console()
        for item in report:
            state = "[green]ok[/]" if not item["problems"] else f"[red]{len(item['problems'])} problem(s)[/]"
            out.print(f"{escape(item['app'])}: {item['entries']} entries checked, {state}")
            for problem in item["problems"]:
                out.print(f"  {problem['key'][:12] or 'index'}: {escape(problem['problem'])}")
        if not apps:
            out.print(f"no cache under {escape(str(root / 'cache'))}")
    if bad:
        ctx.exit(1)


@cache_group.command("clear")
@click.argument("app")
@apps_path_option
@SHARE_OPTION
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_context
def cache_clear(ctx: click.Context, app: str, share: Path | None, yes: bool, as_json: bool) -> None:
    """Remove every cache entry of APP (the next run computes everything again)."""
    from ..base.quantities import format_size
    from ..cache import CacheStore
    from ..cache.maintenance import live_keys

    root = share_for(ctx, app, share)
    name = app_name(ctx, app, share)
    store = CacheStore.for_app(root, name)
    infos = list(store.entries())
    size = sum(i.size for i in infos)
    if not infos and not store.root.exists():
        if as_json:
            print_json({"app": name, "removed": 0, "size": 0, "path": str(store.root)})
        else:
            console().print(f"no cache of {escape(name)} under {escape(str(root / 'cache'))}: nothing to remove")
        return
    running = sorted(set(live_keys(root, [name]).get(name, {}).values()))
    if running:
        console(stderr=True).print(
            f"[yellow]warning:[/] {len(running)} run{'s' if len(running) != 1 else ''} of {escape(name)} "
            f"{'are' if len(running) != 1 else 'is'} running ({', '.join(running[:3])}); what they stored is removed too "
            "(they are not disturbed, but the next run computes it again)")
    if not yes:
        click.confirm(f"Remove {len(infos)} cache entries of {name} ({format_size(size)}) from {store.root}?", abort=True, err=True)
    removed = store.clear()
    if as_json:
        print_json({"app": name, "removed": removed, "size": size, "path": str(store.root), "running": running})
        return
    console().print(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'} of {escape(name)} ({format_size(size)}) "
                    f"from {escape(str(store.root))}")


cache_group.add_command(cache_gc)
