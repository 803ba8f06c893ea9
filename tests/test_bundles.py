"""`agi runs export|verify|import`: bundles of real toy runs carried to another share, tampered
with, signed and checked, as a user would run them."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from agi_core.base.errors import AgiError
from agi_core.provenance.bundle import verify_bundle
from agi_core.provenance.bundle_import import import_bundle
from tests.conftest import TEST_APPS, run_agi


def run_app(share: Path, *sets: str) -> str:
    options = [item for assignment in sets for item in ("--set", assignment)]
    out = run_agi("run", "toy", "--apps-path", str(TEST_APPS), "--set", f'cluster.workers_data_path="{share}"', *options, "--json")
    return json.loads(out.stdout)["run_id"]


def agi(*args: str):
    return run_agi(*args)


def members(bundle: Path) -> list[str]:
    with tarfile.open(bundle) as tar:
        return tar.getnames()


def rewrite(bundle: Path, edit) -> None:
    """Unzip ``bundle``, let ``edit(raw tar bytes, TarFile)`` change it, zip it again."""
    raw = bytearray(gzip.decompress(bundle.read_bytes()))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as tar:
        edit(raw, tar)
    bundle.write_bytes(gzip.compress(bytes(raw)))


def keys(tmp_path: Path, name: str, fmt: str = "openssh") -> tuple[Path, Path]:
    """A fresh Ed25519 key pair: the private key (OpenSSH or PEM) and the OpenSSH public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = tmp_path / name
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.OpenSSH if fmt == "openssh" else serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = tmp_path / f"{name}.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b" test\n")
    return private, public


@pytest.fixture
def failed_run(share: Path) -> str:
    """A failed DAG run that wrote output files and stored cache entries, with its report."""
    run_id = run_app(share, "n=5", "chain=true", "fail_on=[3]", "write_files=true")
    out = agi("runs", "report", run_id, "--share", str(share))
    assert out.returncode == 0, out.stderr
    return run_id


def test_export_import_into_another_share_then_show_and_report_work_there(share, failed_run, tmp_path):
    bundle = tmp_path / "run.tar.gz"
    private, public = keys(tmp_path, "signer")
    out = agi("runs", "export", failed_run, "--share", str(share), "--out", str(bundle), "--with-cache", "--sign", str(private))
    assert out.returncode == 0, out.stderr
    names = members(bundle)
    for name in ("run/manifest.json", "run/plan.json", "run/cache_keys.json", "run/gantt.png", "run/dag.png", "run/cache.png",
                 "run/report.pdf", "run/out/part-0.txt", "run/out/part-2.txt", "SHA256SUMS"):
        assert name in names, name
    entries = [n for n in names if n.startswith("cache/") and n.endswith(".entry")]
    assert len(entries) == 3 and len([n for n in names if ".files-" in n]) == 3  # p0..p2 stored, each with its file
    with tarfile.open(bundle) as tar:
        sums = dict(reversed(line.split("  ", 1)) for line in tar.extractfile("SHA256SUMS").read().decode().splitlines())
    assert set(sums) == set(names) - {"SHA256SUMS", "SHA256SUMS.sig", "SHA256SUMS.pub"}
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]

    verified = agi("runs", "verify", str(bundle))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "good" in verified.stdout and "ok" in verified.stdout

    other = tmp_path / "other"
    config = {"XDG_CONFIG_HOME": str(tmp_path / "config")}  # the signer's key is trusted: its entries may come in
    assert run_agi("keys", "trust", str(public), env=config).returncode == 0
    imported = run_agi("runs", "import", str(bundle), "--share", str(other), "--with-cache", env=config)
    assert imported.returncode == 0, imported.stderr
    run_dir = other / "runs" / "toy" / failed_run
    assert (run_dir / "out" / "part-2.txt").read_text() == (share / "runs" / "toy" / failed_run / "out" / "part-2.txt").read_text()
    from agi_core.cache import CacheStore

    imported_store = CacheStore(other / "cache" / "toy")  # imported into a pack, each entry checked
    assert sorted(imported_store.view().keys()) == \
        sorted(n.rsplit("/", 1)[1].removesuffix(".entry") for n in entries)
    assert run_agi("cache", "verify", "toy", "--share", str(other)).returncode == 0
    assert not [p for p in (other / "runs").iterdir() if p.name.startswith(".tmp")]
    from agi_core.provenance import read_record

    moved = read_record(run_dir / "manifest.json")  # its paths follow it to the new share
    assert moved.out_dir == str(run_dir / "out") and moved.cache == str(other / "cache" / "toy")
    stored = [p for p in moved.partitions if p.cache == "stored"]
    assert stored and all(CacheStore.header_at(p.result_location, p.cache_key) for p in stored)
    shown = agi("runs", "show", failed_run, "--share", str(other))
    assert shown.returncode == 0, shown.stderr
    assert failed_run in shown.stdout and "failed" in shown.stdout and "toy failure in partition 3" in shown.stdout
    reported = agi("runs", "report", failed_run, "--share", str(other))
    assert reported.returncode == 0, reported.stderr
    assert (run_dir / "report.pdf").read_bytes().startswith(b"%PDF")

    again = agi("runs", "import", str(bundle), "--share", str(other))
    assert again.returncode != 0 and "already on this share" in again.stderr
    # A run folder that is not there yet, but cache entries that are: they are kept, the run is imported.
    import shutil

    shutil.rmtree(run_dir)
    from agi_core.provenance.trust import TrustedKeys

    done = import_bundle(bundle, other, with_cache=True, trusted=TrustedKeys(tmp_path / "config" / "agi_core" / "trusted_keys"))
    assert (done.entries_added, done.entries_kept) == (0, 3) and (run_dir / "manifest.json").is_file()


def test_a_tampered_bundle_fails_verify_naming_the_file_and_is_not_imported(share, failed_run, tmp_path):
    bundle = tmp_path / "run.tar.gz"
    assert agi("runs", "export", failed_run, "--share", str(share), "--out", str(bundle)).returncode == 0

    def flip(raw: bytearray, tar: tarfile.TarFile) -> None:
        member = tar.getmember("run/out/part-1.txt")
        raw[member.offset_data] ^= 0x01

    rewrite(bundle, flip)
    out = agi("runs", "verify", str(bundle))
    assert out.returncode != 0
    assert "changed: run/out/part-1.txt" in out.stdout and "failed verification" in out.stderr
    assert "part-0.txt" not in out.stdout
    check = verify_bundle(bundle)
    assert check.changed == ["run/out/part-1.txt"] and not check.added and not check.removed

    other = tmp_path / "other"
    imported = agi("runs", "import", str(bundle), "--share", str(other))
    assert imported.returncode != 0 and "failed verification" in imported.stderr
    assert not (other / "runs" / "toy").exists()


def test_added_removed_and_unsafe_members_are_named(share, failed_run, tmp_path):
    bundle = tmp_path / "run.tar.gz"
    assert agi("runs", "export", failed_run, "--share", str(share), "--out", str(bundle)).returncode == 0
    with tarfile.open(bundle) as tar:
        kept = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.name != "run/out/part-0.txt"]
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        for member, data in kept:
            tar.addfile(member, io.BytesIO(data))
        for name in ("run/out/extra.txt", "../escape.txt", "/abs.txt"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    check = verify_bundle(evil)
    assert check.removed == ["run/out/part-0.txt"] and check.added == ["run/out/extra.txt"]
    assert any("'../escape.txt'" in p and ".." in p for p in check.problems)
    assert any("'/abs.txt'" in p and "absolute" in p for p in check.problems)
    other = tmp_path / "other"
    with pytest.raises(AgiError, match="failed verification"):
        import_bundle(evil, other)
    assert not (tmp_path / "escape.txt").exists() and not (other / "runs" / "toy").exists()


@pytest.mark.parametrize("fmt", ["openssh", "pem"])
def test_a_signed_bundle_verifies_and_fails_with_another_key(share, failed_run, tmp_path, fmt):
    private, public = keys(tmp_path, "signer", fmt)
    _, stranger = keys(tmp_path, "stranger")
    bundle = tmp_path / "run.tar.gz"
    out = agi("runs", "export", failed_run, "--share", str(share), "--out", str(bundle), "--sign", str(private))
    assert out.returncode == 0, out.stderr
    assert {"SHA256SUMS.sig", "SHA256SUMS.pub"} <= set(members(bundle))

    embedded = agi("runs", "verify", str(bundle))
    assert embedded.returncode == 0, embedded.stdout + embedded.stderr
    assert "good" in embedded.stdout and "embedded" in embedded.stdout
    mine = agi("runs", "verify", str(bundle), "--key", str(public))
    assert mine.returncode == 0 and f"against the key {public}" in mine.stdout
    theirs = agi("runs", "verify", str(bundle), "--key", str(stranger))
    assert theirs.returncode != 0 and "bad signature" in theirs.stdout
    refused = agi("runs", "import", str(bundle), "--share", str(tmp_path / "other"), "--key", str(stranger))
    assert refused.returncode != 0 and not (tmp_path / "other" / "runs" / "toy").exists()

    # Changing SHA256SUMS to match a changed file breaks the signature instead.
    def forge(raw: bytearray, tar: tarfile.TarFile) -> None:
        member = tar.getmember("SHA256SUMS")
        raw[member.offset_data] = ord("0") if raw[member.offset_data] != ord("0") else ord("1")

    rewrite(bundle, forge)
    forged = verify_bundle(bundle, public)
    assert not forged.ok and forged.signature.startswith("BAD")


def test_an_unsigned_bundle_fails_when_a_key_is_required_and_bad_keys_are_explained(share, failed_run, tmp_path):
    _, public = keys(tmp_path, "signer")
    bundle = tmp_path / "run.tar.gz"
    assert agi("runs", "export", failed_run, "--share", str(share), "--out", str(bundle)).returncode == 0
    check = verify_bundle(bundle, public)
    assert not check.ok and any("not signed" in p for p in check.problems)
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    out = agi("runs", "export", failed_run, "--share", str(share), "--out", str(tmp_path / "b2.tar.gz"), "--sign", str(junk))
    assert out.returncode != 0 and "ssh-keygen -t ed25519" in out.stderr
    assert not list(tmp_path.glob("*b2*"))
