"""The in-build supply-chain scripts, run for real: sha256 pins and GPG signatures.

These are the exact files the rendered Dockerfiles copy into every build
(templates/files/); a mismatch must name the artifact and both digests.
"""

import hashlib
import os
import shutil

import pytest

from tests import procs
from tests.conftest import ROOT

FILES = ROOT / "templates" / "files"


def _fetch(tmp_path, name, want, env=None, url="https://invalid.example/none"):
    """Run fetch-artifact.sh with `tmp_path/artifacts` as the mirror (no network)."""
    script = (FILES / "fetch-artifact.sh").read_text().replace("/artifacts/",
                                                                f"{tmp_path}/artifacts/")
    runner = tmp_path / "fetch.sh"
    runner.write_text(script)
    dest = tmp_path / "out" / name
    dest.parent.mkdir(exist_ok=True)
    proc = procs.run(["sh", str(runner), name, url, want, str(dest)],
                     capture_output=True, text=True, env={**os.environ, **(env or {})},
                     timeout=60)
    return proc, dest


@pytest.fixture
def mirror(tmp_path):
    (tmp_path / "artifacts").mkdir()
    data = b"pretend installer tarball\n"
    (tmp_path / "artifacts" / "pkg.tar.gz").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_pinned_artifact_from_the_mirror(tmp_path, mirror):
    proc, dest = _fetch(tmp_path, "pkg.tar.gz", mirror)
    assert proc.returncode == 0 and dest.exists()
    assert f"sha256 ok ({mirror})" in proc.stdout


def test_tampered_artifact_names_itself_and_both_digests(tmp_path, mirror):
    wrong = "0" * 64
    proc, dest = _fetch(tmp_path, "pkg.tar.gz", wrong)
    assert proc.returncode == 1 and not dest.exists()
    assert (f"efakit: artifact pkg.tar.gz: sha256 mismatch: expected {wrong}, actual {mirror}"
            in proc.stderr)


def test_unpinned_artifact_is_refused_unless_allowed(tmp_path, mirror):
    proc, dest = _fetch(tmp_path, "pkg.tar.gz", "UNPINNED")
    assert proc.returncode == 1 and "has no pinned sha256" in proc.stderr and not dest.exists()
    proc, dest = _fetch(tmp_path, "pkg.tar.gz", "UNPINNED", {"EFAKIT_ALLOW_UNPINNED": "1"})
    assert proc.returncode == 0 and "WARNING" in proc.stderr and mirror in proc.stderr


def test_missing_artifact_without_network_fails_clearly(tmp_path, mirror):
    proc, _ = _fetch(tmp_path, "absent.tar.gz", mirror)
    assert proc.returncode == 1
    assert "artifact absent.tar.gz" in proc.stderr


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg: not installed (Debian: gpg)")
def test_gpg_signature_path_with_a_key_made_here(tmp_path):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}

    def gpg(*args, **kw):
        return procs.run(["gpg", "--batch", "--yes", *args], env=env, check=True,
                         capture_output=True, timeout=120, **kw)

    gpg("--passphrase", "", "--quick-generate-key", "efakit test <test@efakit>", "ed25519",
        "sign", "1d")
    fpr = gpg("--with-colons", "--fingerprint").stdout.decode().split("fpr:::::::::")[1][:40]
    payload = tmp_path / "installer.tar.gz"
    payload.write_bytes(b"installer")
    gpg("--detach-sign", "-o", str(tmp_path / "installer.tar.gz.sig"), str(payload))
    (tmp_path / "key.asc").write_bytes(gpg("--armor", "--export", fpr).stdout)
    script = FILES / "verify-signature.sh"

    def verify(want, data=None):
        if data is not None:
            payload.write_bytes(data)
        return procs.run(["sh", str(script), str(payload), str(payload) + ".sig",
                          str(tmp_path / "key.asc"), want], capture_output=True,
                         text=True, timeout=120)

    try:
        _check_signatures(verify, fpr)
    finally:
        procs.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)


def _check_signatures(verify, fpr):
    good = verify(fpr)
    assert good.returncode == 0 and f"good signature by {fpr}" in good.stdout
    assert "fingerprint mismatch" in verify("A" * 40).stderr
    unpinned = verify("UNPINNED")
    assert unpinned.returncode == 1 and "no pinned fingerprint" in unpinned.stderr
    tampered = verify(fpr, b"installer with a backdoor")
    assert tampered.returncode == 1 and "bad GPG signature" in tampered.stderr
