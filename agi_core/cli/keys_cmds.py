"""``agi keys trust|list|untrust``: the Ed25519 keys whose signed bundles may bring cache entries in."""

from __future__ import annotations

import click

from .options import json_option
from .output import print_json, table

__all__ = ["keys_group"]


@click.group("keys")
def keys_group() -> None:
    """The keys you trust to sign bundles: `agi runs import --with-cache` takes a bundle's cache
    entries only when its signature checks against one of them."""


@keys_group.command("trust")
@click.argument("key")
@click.option("--name", default=None, help="What to call the key (default: its comment, else the file's name).")
@json_option
def keys_trust(key: str, name: str | None, as_json: bool) -> None:
    """Trust KEY: a public key file (KEYFILE.pub, OpenSSH or PEM) or the key's text ("ssh-ed25519 AAAA…").

    \b
    agi keys trust ~/colleague_ed25519.pub --name alice
    agi keys trust "ssh-ed25519 AAAAC3Nza… alice@lab"
    """
    from ..provenance.trust import TrustedKeys

    keys = TrustedKeys()
    added = keys.trust(key, name=name)
    if as_json:
        print_json({"name": added.name, "fingerprint": added.fingerprint, "key": added.line, "file": str(keys.path)})
        return
    click.echo(f"trusted {added.name} ({added.fingerprint}) in {keys.path}")


@keys_group.command("list")
@json_option
def keys_list(as_json: bool) -> None:
    """The keys you trust, with their fingerprints (as `ssh-keygen -lf KEYFILE.pub` prints them)."""
    from ..provenance.trust import TrustedKeys

    keys = TrustedKeys()
    found = keys.keys()
    if as_json:
        print_json({"file": str(keys.path), "keys": [{"name": k.name, "fingerprint": k.fingerprint, "key": k.line} for k in found]})
        return
    if not found:
        click.echo(f"no trusted keys ({keys.path}): trust one with `agi keys trust KEYFILE.pub`")
        return
    table(f"trusted keys ({keys.path})", ["name", "fingerprint"], ([k.name, k.fingerprint] for k in found))


@keys_group.command("untrust")
@click.argument("which")
@json_option
def keys_untrust(which: str, as_json: bool) -> None:
    """Stop trusting the key named WHICH (or whose fingerprint WHICH is)."""
    from ..provenance.trust import TrustedKeys

    gone = TrustedKeys().untrust(which)
    if as_json:
        print_json({"name": gone.name, "fingerprint": gone.fingerprint})
        return
    click.echo(f"no longer trusted: {gone.name} ({gone.fingerprint})")
