"""The Ed25519 keys whose signed bundles may bring cache entries in (`agi keys trust|list|untrust`).

A signature proves who made a bundle only if the reader knows the signer's key: the key a bundle
carries proves nothing by itself. So `agi runs import --with-cache` takes cache entries (pickles,
which run code when loaded) only from a bundle whose signature checks against a key listed here.

The list is one file, ``$XDG_CONFIG_HOME/agi_core/trusted_keys`` (`trust_file`), in the OpenSSH
``authorized_keys`` form: ``ssh-ed25519 AAAA… NAME`` per line, ``#`` comments. It is written 0600
in a 0700 folder, and, like OpenSSH's ``authorized_keys``, it is not read when users other than
its owner can write it or its folder (`TrustError`, with the ``chmod`` that fixes it).

>>> import tempfile
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> trusted = TrustedKeys(Path(tempfile.mkdtemp()) / "trusted_keys")
>>> public = Ed25519PrivateKey.generate().public_key()
>>> added = trusted.trust(openssh_line(public), name="alice")
>>> [k.name for k in trusted.keys()], trusted.find(public) == added
(['alice'], True)
>>> trusted.untrust("alice").name, trusted.find(public)
('alice', None)
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base import paths
from ..base.atomic import write_bytes_atomic
from ..base.errors import AgiError
from .signing import openssh_public, public_from_bytes

__all__ = ["TrustError", "TrustedKey", "TrustedKeys", "fingerprint", "openssh_line", "trust_file"]


class TrustError(AgiError):
    """The trusted-keys file cannot be used (writable by others, unreadable, or a bad line)."""


def trust_file() -> Path:
    return paths.config_dir("trusted_keys")


def openssh_line(public: Any) -> str:
    """``ssh-ed25519 AAAA…`` (no comment) of a public key."""
    return " ".join(openssh_public(public).decode().split()[:2])


def fingerprint(line: str) -> str:
    """``SHA256:…`` as ``ssh-keygen -lf`` prints it, for the key of an OpenSSH public key line."""
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class TrustedKey:
    name: str
    line: str  # ``ssh-ed25519 AAAA…``

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.line)


class TrustedKeys:
    """The trusted-keys file at ``path`` (default: `trust_file`)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else trust_file()

    def keys(self) -> list[TrustedKey]:
        """Every trusted key; none when there is no file. Raises `TrustError` when the file or its
        folder is writable by other users, or a line is not an Ed25519 public key."""
        try:
            text = self._read()
        except FileNotFoundError:
            return []
        found = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            try:
                public_from_bytes(" ".join(parts[:2]).encode(), f"{self.path}:{number}")
            except AgiError as exc:
                raise TrustError(f"{self.path} line {number}: {exc.message}",
                                 fix="remove or fix that line (or `agi keys untrust` it and trust the key again)") from None
            found.append(TrustedKey(parts[2] if len(parts) > 2 else "", " ".join(parts[:2])))
        return found

    def _read(self) -> str:
        for path in (self.path.parent, self.path):
            mode = os.stat(path).st_mode
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise TrustError(f"{path} is writable by {'other users' if mode & stat.S_IWOTH else 'its group'} "
                                 f"(mode {stat.S_IMODE(mode):04o}): the trusted keys are not read",
                                 fix=f"chmod go-w {path}")
        return self.path.read_text()

    def find(self, public: Any) -> TrustedKey | None:
        """The trusted entry of ``public`` (an Ed25519 public key), or None."""
        line = openssh_line(public)
        return next((key for key in self.keys() if key.line == line), None)

    def trust(self, source: str, *, name: str | None = None) -> TrustedKey:
        """Add a key: ``source`` is a public key file (``KEYFILE.pub``, OpenSSH or PEM) or a key's
        text (``ssh-ed25519 AAAA… [comment]``). Its name: ``name``, else the key's comment, else
        the file's name. A key already trusted keeps its entry (returned)."""
        text = source.strip()
        if text.startswith("ssh-"):
            data, origin, comment = text.encode(), "the key given", " ".join(text.split()[2:])
        else:
            path = Path(source).expanduser()
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise AgiError(f"{path}: cannot read the key: {exc.strerror}",
                               fix="give a public key file (KEYFILE.pub) or the key's text (ssh-ed25519 AAAA…)") from None
            origin = str(path)
            words = data.decode("utf-8", "replace").split()
            comment = " ".join(words[2:]) if data.lstrip().startswith(b"ssh-") else ""
            comment = comment or path.name.removesuffix(".pub")
        public = public_from_bytes(data, origin)
        line = openssh_line(public)
        keys = self.keys()
        for key in keys:
            if key.line == line:
                return key
        label = " ".join((name or comment or fingerprint(line)).split())
        if any(key.name == label for key in keys):
            raise AgiError(f"a trusted key is already named {label!r}", fix="give this one another name with --name NAME")
        self._write([*keys, TrustedKey(label, line)])
        return TrustedKey(label, line)

    def untrust(self, which: str) -> TrustedKey:
        """Remove the key named ``which`` (or whose fingerprint it is); returns it."""
        keys = self.keys()
        gone = [key for key in keys if which in (key.name, key.fingerprint, key.fingerprint.removeprefix("SHA256:"))]
        if not gone:
            raise AgiError(f"no trusted key is named {which!r} or has that fingerprint", fix="see them with `agi keys list`")
        self._write([key for key in keys if key not in gone])
        return gone[0]

    def _write(self, keys: list[TrustedKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = "# Ed25519 keys whose signed bundles may bring cache entries in (agi keys trust|list|untrust)\n"
        text += "".join(f"{key.line} {key.name}\n" for key in keys)
        write_bytes_atomic(self.path, text.encode(), mode=0o600)
