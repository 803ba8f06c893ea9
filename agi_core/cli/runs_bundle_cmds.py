"""``agi runs export|verify|import``: a run as one checksummed, optionally signed bundle, carried to
another machine or share (`agi_core.provenance.bundle`).
"""

from __future__ import annotations

from pathlib import Path

import click

from .options import apps_path_option, json_option
from .output import console, print_json
from .runs_options import RUNS_SHARE_OPTION, run_store

__all__ = ["runs_export", "runs_import", "runs_verify"]


@click.command("export")
@click.argument("run")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The bundle to write (.tar.gz).")
@click.option("--with-cache", is_flag=True, help="Also pack the cache entries the run used or stored (and their output files).")
@click.option("--sign", "sign", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, metavar="KEYFILE",
              help="Sign SHA256SUMS with this Ed25519 private key (OpenSSH or PEM); the bundle carries its public key.")
@click.option("--app", default=None, help="Read APP's share (its workers_data_path).")
@apps_path_option
@RUNS_SHARE_OPTION
@json_option
@click.pass_context
def runs_export(ctx: click.Context, run: str, out: Path, with_cache: bool, sign: Path | None, app: str | None, share: Path | None,
                as_json: bool) -> None:
    """Pack RUN into one bundle: its record, plan, cache keys, report files and out/ files (and with
    --with-cache its cache entries), with a SHA256SUMS of every file (signed with --sign).

    \b
    agi runs export last --out run.tar.gz --sign ~/.ssh/id_ed25519
    agi runs verify run.tar.gz --key ~/.ssh/id_ed25519.pub
    agi runs import run.tar.gz --share /other/share
    """
    from ..provenance.bundle import export_run

    record = run_store(ctx, app, share).find(run)
    done = export_run(record, out, with_cache=with_cache, sign_key=sign)
    if as_json:
        print_json({"bundle": str(done.path), "run_id": record.run_id, "app": record.app.name, "files": done.files, "size": done.size,
                    "cache_entries": done.entries, "missing_entries": done.missing_entries, "signed": done.signed})
        return
    out_console = console()
    for location in done.missing_entries:
        out_console.print(f"[yellow]cache entry gone, not packed: {location}[/]")
    click.echo(f"{done.path}: run {record.run_id} of {record.app.name}, {done.files} files"
               + (f" ({done.entries} cache entries)" if with_cache else "") + f", {done.size} bytes"
               + (", signed" if done.signed else ""))


@click.command("verify")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, metavar="PUBKEY",
              help="Check the signature against this Ed25519 public key (OpenSSH or PEM); without it, against the key "
                   "the bundle carries, which shows it is intact but not who signed it.")
@json_option
def runs_verify(bundle: Path, key: Path | None, as_json: bool) -> None:
    """Check a bundle's every checksum and its signature; name each file changed, added or removed.
    Exits non-zero on any problem."""
    from ..base.errors import AgiError
    from ..provenance.bundle import verify_bundle

    check = verify_bundle(bundle, key)
    if as_json:
        print_json(check.to_json())
        if not check.ok:
            raise SystemExit(1)
        return
    click.echo(f"{bundle}: run {check.run_id or '?'} of {check.app or '?'}, {check.files} files"
               + (f" ({check.entries} cache entries)" if check.entries else ""))
    click.echo(f"signature: {check.signature}")
    if check.ok:
        click.echo("ok: every checksum matches")
        return
    for message in check.messages():
        click.echo(message)
    problems = len(check.messages())
    raise AgiError(f"{bundle} failed verification: {problems} problem{'s' * (problems != 1)}",
                   fix="do not trust or import this bundle; export the run again")


@click.command("import")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, metavar="PUBKEY",
              help="Require the bundle's signature to check against this Ed25519 public key.")
@click.option("--share", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The share to import into (default: the local default share).")
@click.option("--with-cache", is_flag=True,
              help="Also import the bundle's cache entries: only from a bundle signed by a key you trust (agi keys trust).")
@json_option
def runs_import(bundle: Path, key: Path | None, share: Path | None, with_cache: bool, as_json: bool) -> None:
    """Verify a bundle, then unpack its run into <share>/runs/<app>/<run_id>/ and, with --with-cache,
    its cache entries into <share>/cache/<app>/: only when the bundle is signed by a key you trust
    (`agi keys trust`), since an entry is a pickle that runs code when loaded; otherwise the run
    comes without them, and the command says why. An existing run folder is never overwritten, nor
    an existing entry."""
    from ..base.paths import default_share
    from ..base.share_access import ShareAccess, share_umask
    from ..provenance.bundle_import import import_bundle

    with share_umask(ShareAccess()):  # what it creates on the share: folders 0750, files 0640
        done = import_bundle(bundle, share or default_share(), key, with_cache=with_cache)
    if as_json:
        print_json({"run_dir": str(done.run_dir), "app": done.app, "run_id": done.run_id, "entries_added": done.entries_added,
                    "entries_kept": done.entries_kept, "entries_left": done.entries_left, "cache_refused": done.cache_refused,
                    "signature": done.verification.signature})
        return
    click.echo(f"signature: {done.verification.signature}")
    click.echo(f"imported run {done.run_id} of {done.app} into {done.run_dir}"
               + (f"; cache entries: {done.entries_added} added, {done.entries_kept} already there"
                  if done.entries_added or done.entries_kept else ""))
    if done.cache_refused:
        click.echo(f"warning: {done.entries_left} cache entr{'y' if done.entries_left == 1 else 'ies'} not imported: "
                   f"{done.cache_refused}", err=True)
