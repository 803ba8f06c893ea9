"""Ed25519 keys for signed run bundles (`bundle.export_run` signs, `bundle.verify_bundle` checks):
private keys from OpenSSH or PEM files, public keys from OpenSSH (``KEYFILE.pub``) or PEM text.

Needs the ``cryptography`` package (installed with asyncssh), imported only when a key is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base.errors import AgiError

__all__ = ["load_private_key", "openssh_public", "public_from_bytes"]


# -- keys --------------------------------------------------------------------------------------


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise AgiError("signed bundles need the cryptography package, which is not installed",
                       fix="pip install cryptography") from None
    return serialization


def load_private_key(path: Path) -> Any:
    """An Ed25519 private key from an OpenSSH or PEM file (unencrypted)."""
    serialization = _crypto()
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AgiError(f"{path}: cannot read the signing key: {exc.strerror}", fix="check the path") from None
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise AgiError(f"{path}: the signing key is protected by a passphrase",
                       fix="use an unencrypted Ed25519 key: ssh-keygen -t ed25519 -N '' -f KEYFILE") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AgiError(f"{path}: not a readable private key ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                       fix="give an Ed25519 key in OpenSSH or PEM format: ssh-keygen -t ed25519 -N '' -f KEYFILE") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AgiError(f"{path}: a {type(key).__name__.removeprefix('_')} key, not an Ed25519 one",
                       fix="sign with an Ed25519 key: ssh-keygen -t ed25519 -N '' -f KEYFILE")
    return key


def public_from_bytes(data: bytes, origin: str) -> Any:
    """An Ed25519 public key from OpenSSH (``ssh-ed25519 AAAA… comment``) or PEM text; a private
    key file gives its public half."""
    serialization = _crypto()
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        if b"PRIVATE KEY" in data:
            return load_private_key(Path(origin)).public_key()
        if data.lstrip().startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(data.strip().splitlines()[0])
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AgiError(f"{origin}: not a readable public key ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                       fix="give an Ed25519 public key in OpenSSH (KEYFILE.pub) or PEM format") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AgiError(f"{origin}: not an Ed25519 public key", fix="bundles are signed with Ed25519 keys")
    return key


def openssh_public(key: Any) -> bytes:
    serialization = _crypto()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b" agi-bundle\n"
