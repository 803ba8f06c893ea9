"""Bundles from others: cache entries come in only signed by a key the user trusts (`agi keys`),
and no tar member can reach outside the import's target (links, devices, FIFOs, absolute or ``..`` names)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import pickle
import stat
import tarfile
from pathlib import Path

import pytest

from agi_core import AGI
from agi_core.base.errors import AgiError
from agi_core.cache import CacheStore
from agi_core.cache.entries import decode_single, encode_single
from agi_core.provenance import read_record
from agi_core.provenance.bundle import export_run, verify_bundle
from agi_core.provenance.bundle_import import import_bundle
from agi_core.provenance.signing import openssh_public
from agi_core.provenance.trust import TrustedKeys
from tests.conftest import run_agi
from tests.test_bundles import keys


class _Canary:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A toy run (4 partitions, each with an output file) stored in the cache of a share, and its record."""
    from agi_core import AgiEnv
    from tests.conftest import TEST_APPS

    share = tmp_path_factory.mktemp("source") / "share"
    result = asyncio.run(AGI.run(AgiEnv(app="toy", apps_path=TEST_APPS), mode=0, n=4, write_files=True,
                                 cluster={"workers_data_path": str(share)}))
    return share, read_record(result.manifest)


def repack(source: Path, out: Path, *, replace: dict[str, bytes] | None = None, extra: list[tuple[tarfile.TarInfo, bytes]] = (),
           sign_with=None) -> None:
    """What a sender can build: ``source``'s members, some replaced, with a SHA256SUMS that matches
    them, signed by whatever key they hold (or not signed)."""
    replace = replace or {}
    with tarfile.open(source) as tar:
        files = {m.name: replace.get(m.name, tar.extractfile(m).read()) for m in tar.getmembers()
                 if m.isfile() and not m.name.startswith("SHA256SUMS")}
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())).encode()
    files["SHA256SUMS"] = sums
    if sign_with is not None:
        files["SHA256SUMS.sig"] = sign_with.sign(sums)
        files["SHA256SUMS.pub"] = openssh_public(sign_with.public_key())
    with tarfile.open(out, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data else None)


def planted(made, tmp_path: Path, canary: Path, sign_with=None) -> Path:
    """The run's bundle with one cache entry's pickle replaced by one that creates ``canary``."""
    _, record = made
    honest = tmp_path / "honest.tar.gz"
    export_run(record, honest, with_cache=True)
    with tarfile.open(honest) as tar:
        name = next(n for n in tar.getnames() if n.endswith(".entry"))
        header, _ = decode_single(Path(name), tar.extractfile(name).read())
    evil = tmp_path / "evil.tar.gz"
    repack(honest, evil, replace={name: encode_single(header, pickle.dumps(_Canary(canary)))}, sign_with=sign_with)
    return evil


def private_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed-by-a-stranger"])
def test_a_bundle_with_a_planted_entry_not_signed_by_a_trusted_key_comes_without_its_entries(made, tmp_path, signed):
    canary = tmp_path / "canary"
    stranger = private_key() if signed else None
    bundle = planted(made, tmp_path, canary, sign_with=stranger)
    other = tmp_path / "other"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    out = run_agi("runs", "import", str(bundle), "--share", str(other), "--with-cache", "--json", env=env)
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert done["entries_added"] == 0 and done["entries_left"] == 4
    assert ("do not trust" if signed else "not signed") in done["cache_refused"]
    assert (other / "runs" / "toy" / made[1].run_id / "manifest.json").is_file()  # the run itself came
    assert not (other / "cache").exists() and not canary.exists()
    said = run_agi("runs", "import", str(bundle), "--share", str(tmp_path / "third"), "--with-cache", env=env)
    assert "warning: 4 cache entries not imported: " in said.stderr


def test_a_bundle_signed_by_a_trusted_key_brings_its_entries_authenticated_under_the_local_key(made, tmp_path):
    signer = private_key()
    _, record = made
    signed = tmp_path / "signed.tar.gz"
    repack_source = tmp_path / "plain.tar.gz"
    export_run(record, repack_source, with_cache=True)
    repack(repack_source, signed, sign_with=signer)
    public = tmp_path / "colleague.pub"
    public.write_bytes(openssh_public(signer.public_key()))
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}

    other = tmp_path / "other"
    without = run_agi("runs", "import", str(signed), "--share", str(other), "--json", env=env)  # not asked for
    assert json.loads(without.stdout)["entries_added"] == 0 and "--with-cache" in json.loads(without.stdout)["cache_refused"]

    trusted = run_agi("keys", "trust", str(public), "--name", "colleague", env=env)
    assert trusted.returncode == 0 and "trusted colleague (SHA256:" in trusted.stdout, trusted.stderr
    trust_file = tmp_path / "config" / "agi_core" / "trusted_keys"
    assert stat.S_IMODE(trust_file.stat().st_mode) == 0o600
    listed = json.loads(run_agi("keys", "list", "--json", env=env).stdout)["keys"]
    assert [k["name"] for k in listed] == ["colleague"]

    again = tmp_path / "again"
    out = run_agi("runs", "import", str(signed), "--share", str(again), "--with-cache", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["entries_added"] == 4 and json.loads(out.stdout)["cache_refused"] is None
    store = CacheStore.for_app(again, "toy")
    assert [store.load(key).result["square"] for key in sorted(store.view().keys())]  # every tag checks under our key
    assert run_agi("cache", "verify", "toy", "--share", str(again)).returncode == 0

    gone = run_agi("keys", "untrust", "colleague", env=env)
    assert gone.returncode == 0 and json.loads(run_agi("keys", "list", "--json", env=env).stdout)["keys"] == []


def test_a_trusted_keys_file_writable_by_others_is_not_read(tmp_path):
    trusted = TrustedKeys(tmp_path / "config" / "trusted_keys")
    _, public = keys(tmp_path, "k")
    trusted.trust(str(public))
    trusted.path.chmod(0o666)
    with pytest.raises(AgiError, match="writable by other users") as caught:
        trusted.keys()
    assert caught.value.fix == f"chmod go-w {trusted.path}"


def _member(kind: str) -> tuple[tarfile.TarInfo, bytes]:
    data = b""
    if kind in ("absolute", "dotdot"):
        info = tarfile.TarInfo("/tmp/agi-escape.txt" if kind == "absolute" else "run/../../agi-escape.txt")
        data = b"x"
        info.size = 1
        return info, data
    info = tarfile.TarInfo(f"run/out/{kind}")
    info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "chardev": tarfile.CHRTYPE, "blockdev": tarfile.BLKTYPE,
                 "fifo": tarfile.FIFOTYPE}[kind]
    if kind in ("symlink", "hardlink"):
        info.linkname = "/etc/passwd"
    if kind in ("chardev", "blockdev"):
        info.devmajor, info.devminor = 1, 3
    return info, data


_REASONS = {"symlink": "a symbolic link to '/etc/passwd'", "hardlink": "a hard link to '/etc/passwd'", "chardev": "a device",
            "blockdev": "a device", "fifo": "a FIFO", "absolute": "an absolute path", "dotdot": "a path with '..'"}


@pytest.mark.parametrize("kind", list(_REASONS))
def test_a_tar_member_that_is_a_link_device_fifo_or_outside_the_target_is_refused(made, tmp_path, kind):
    _, record = made
    honest = tmp_path / "honest.tar.gz"
    export_run(record, honest)
    evil = tmp_path / "evil.tar.gz"
    info, data = _member(kind)
    repack(honest, evil, extra=[(info, data)])
    check = verify_bundle(evil)
    assert not check.ok and any(f"unsafe member {info.name!r}: {_REASONS[kind]}" in p for p in check.problems), check.problems
    other = tmp_path / "other"
    with pytest.raises(AgiError, match="failed verification"):
        import_bundle(evil, other)
    assert not (other / "runs" / "toy").exists() and not (tmp_path / "agi-escape.txt").exists()
    assert not list(other.rglob("*")) or all(p.is_dir() for p in other.rglob("*"))
