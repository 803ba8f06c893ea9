"""TLS between manager, scheduler and workers: a private CA and one certificate for the cluster.

Made on the manager with `cryptography` (kept in ``paths.state_dir("tls")``, private
files 0600), copied to each host, and used by every Dask process and the client
(``require_encryption``: nothing talks in the clear).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths
from ..atomic import write_bytes_atomic

__all__ = ["TlsFiles", "ensure_tls_files", "security_for"]


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data, mode=0o600)


def ensure_tls_files(names: list[str], folder: Path | None = None) -> TlsFiles:
    """A CA (made once) and a certificate valid for ``names`` (addresses or host names), remade
    when the names change."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = folder or paths.state_dir("tls")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = TlsFiles(folder / "ca.pem", folder / "cluster.pem", folder / "cluster.key")
    wanted = sorted({*names, "127.0.0.1", "localhost"})
    names_file = folder / "names.json"
    pem = serialization.Encoding.PEM
    now = datetime.datetime.now(datetime.timezone.utc)

    if not files.ca.is_file() or not (folder / "ca.key").is_file():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agi_core cluster CA")])
        ca_cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(ca_key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
        _write_private(folder / "ca.key", ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        _write_private(files.ca, ca_cert.public_bytes(pem))
        names_file.unlink(missing_ok=True)
    if files.cert.is_file() and files.key.is_file() and names_file.is_file() and json.loads(names_file.read_text()) == wanted:
        return files

    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    alternatives: list[Any] = []
    for name in wanted:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agi_core cluster")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    _write_private(files.key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    _write_private(files.cert, cert.public_bytes(pem))
    names_file.write_text(json.dumps(wanted))
    return files


def security_for(files: TlsFiles) -> Any:
    """The `distributed.Security` every participant uses: same CA, same certificate, TLS required."""
    from distributed import Security

    ca, cert, key = str(files.ca), str(files.cert), str(files.key)
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, tls_scheduler_cert=cert, tls_scheduler_key=key,
                    tls_worker_cert=cert, tls_worker_key=key, require_encryption=True)
