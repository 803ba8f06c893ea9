"""Each cluster's own TLS credentials: a private CA and the one certificate its processes present.

Every cluster that listens on a socket gets fresh credentials when it starts (`make_credentials`):
a CA whose private key signs one certificate (EC P-256) and is then thrown away, never written,
so nobody, not even a reader of agi's state folder, can issue a second certificate for that
cluster, and a certificate of another cluster (another app's, yesterday's) is refused. The
scheduler, the workers and the client all present that certificate and require the peer's
(mutual TLS, `require_encryption`): a client without it cannot connect, let alone submit work.

Where the credentials live:

- a run's embedded cluster (`InProcessCluster`): in memory only, passed to its worker
  processes with their Nanny; nothing is written;
- launched processes (`LaunchedCluster`): ``<agi root>/tls/<cluster id>/`` on each host, folder
  0700, files 0600, removed when the cluster stops; a warm cluster's are also kept on the
  manager in ``paths.state_dir("tls", <app>)``, which its state file names, so later runs,
  ``agi cluster status`` and ``down`` find them;
- Slurm jobs: ``<log_directory>/tls/<cluster id>/`` on the shared filesystem (`SlurmCluster`).

``[cluster] tls = false`` turns all of this off (plain TCP), which `insecure_warning` words for
`agi doctor` and `agi cluster status`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base import paths
from ..base.atomic import write_bytes_atomic
from ..base.errors import AgiError

__all__ = ["FILE_NAMES", "ClusterCredentials", "TlsFiles", "cluster_id", "insecure_warning", "make_credentials",
           "manager_folder", "remove_credentials", "security_for"]

#: the files of one cluster's credentials in its folder: CA certificate, certificate, private key
FILE_NAMES = ("ca.pem", "cluster.pem", "cluster.key")


@dataclass(frozen=True)
class TlsFiles:
    """Where one cluster's credentials are, as files (for processes started by path)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_folder(cls, folder: Path) -> TlsFiles:
        return cls(*(folder / name for name in FILE_NAMES))


@dataclass(frozen=True)
class ClusterCredentials:
    """One cluster's trust, as PEM text: its CA's certificate, and the certificate and key that
    every process of the cluster (and its client) presents."""

    ca: str
    cert: str
    key: str

    def security(self) -> Any:
        """The `distributed.Security` of every participant, in memory (nothing read from disk):
        this certificate, this CA only, TLS required both ways."""
        from distributed import Security

        return Security(tls_ca_file=self.ca, tls_client_cert=self.cert, tls_client_key=self.key,
                        tls_scheduler_cert=self.cert, tls_scheduler_key=self.key,
                        tls_worker_cert=self.cert, tls_worker_key=self.key, require_encryption=True)

    def texts(self) -> dict[str, str]:
        """File name → content, in `FILE_NAMES` order."""
        return dict(zip(FILE_NAMES, (self.ca, self.cert, self.key), strict=True))

    def save(self, folder: Path) -> TlsFiles:
        """Write the three files into ``folder`` (made 0700, with its parent; files 0600)."""
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        for directory in (folder.parent, folder):  # also when they existed before
            os.chmod(directory, 0o700)
        for name, text in self.texts().items():
            write_bytes_atomic(folder / name, text.encode(), mode=0o600)
        return TlsFiles.in_folder(folder)

    @classmethod
    def load(cls, folder: Path, *, cluster: str) -> ClusterCredentials:
        """The credentials saved in ``folder``; `AgiError` naming the file and ``cluster`` when one
        cannot be read."""
        texts = []
        for name in FILE_NAMES:
            path = folder / name
            try:
                texts.append(path.read_text())
            except OSError as exc:
                from errno import errorcode

                cause = errorcode.get(exc.errno or 0, "error")
                raise AgiError(f"the TLS credentials of {cluster} cannot be read: {path}: {cause} ({exc.strerror})",
                               fix="stop the cluster and start it again (agi cluster down APP; agi cluster up APP): "
                                   "it gets new credentials") from None
        return cls(*texts)


def make_credentials(names: Sequence[str], *, days: int = 825) -> ClusterCredentials:
    """Fresh credentials for one cluster: a new CA (its key discarded once it signed) and one
    certificate valid for ``names`` (addresses or host names, plus loopback).

    EC P-256 keys: a few milliseconds for both, so every cluster start can afford its own.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"agi_core cluster CA {secrets.token_hex(4)}")])
    ca_cert = (x509.CertificateBuilder().subject_name(issuer).issuer_name(issuer).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alternatives: list[Any] = []
    for name in sorted({*names, "127.0.0.1", "::1", "localhost"}):
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agi_core cluster")]))
            .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ClusterCredentials(ca_cert.public_bytes(pem).decode(), cert.public_bytes(pem).decode(), key_pem.decode())


def cluster_id(app: str, *, warm: bool) -> str:
    """The name of a cluster's credentials folder: the app's for its warm cluster (one per app, found
    again by later processes), the app's plus a random suffix for a run's own (runs may overlap)."""
    return app if warm else f"{app}-{secrets.token_hex(4)}"


def manager_folder(identifier: str) -> Path:
    """Where the manager keeps a warm cluster's credentials: ``paths.state_dir("tls", <id>)``."""
    return paths.state_dir("tls", identifier)


def remove_credentials(folder: Path) -> None:
    """Delete a stopped cluster's credentials folder (nothing trusts them any more)."""
    shutil.rmtree(folder, ignore_errors=True)


def security_for(files: TlsFiles) -> Any:
    """The `distributed.Security` read from ``files`` (for processes that get paths, such as
    Slurm jobs): same CA, same certificate, TLS required."""
    from distributed import Security

    ca, cert, key = str(files.ca), str(files.cert), str(files.key)
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, tls_scheduler_cert=cert, tls_scheduler_key=key,
                    tls_worker_cert=cert, tls_worker_key=key, require_encryption=True)


def insecure_warning(tls: bool) -> str | None:
    """What `agi doctor` and `agi cluster status` say when ``[cluster] tls = false``; None otherwise."""
    if tls:
        return None
    return ("[cluster] tls = false: the cluster's ports take plain TCP, and anyone who can reach them "
            "(any user of this machine, any host of the network the scheduler binds) can run code as you; "
            "remove `tls = false` to authenticate every connection (docs/security.md)")
