"""Source archives pinned by content tree: the same pin for a git archive and GitHub's
tag archive, checked on the host before a build and again inside it.  A tampered
archive, an archive of another tag, and a missing mirror entry each give one line
naming the artifact, the expected and the actual digest, and no build starts."""

import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from buildkit.mirror import MirrorError, fetch_downloads, pin_problem, tree_id
from buildkit.spec import load_spec
from tests.conftest import ROOT
from tests.test_artifact_scripts import _fetch

SHARED_SOURCES = ROOT.parent / "shared" / "artifacts" / "sources"
OFFLINE = load_spec(ROOT / "images" / "pytorch.yaml", profile="offline")
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def _git_archive(tmp_path, name: str, files: dict[str, str]) -> tuple[bytes, str]:
    """A `git archive --prefix` of a fresh repository, and that repository's tree id."""
    repo = tmp_path / f"repo-{name}"
    repo.mkdir()
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    (repo / "run.sh").write_text("#!/bin/sh\n")
    (repo / "run.sh").chmod(0o755)
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, env=GIT_ENV)
    tree = subprocess.run(["git", "rev-parse", "HEAD^{tree}"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()
    tar = subprocess.run(["git", "archive", "--format=tar", f"--prefix={name}/", "HEAD"],
                         cwd=repo, check=True, capture_output=True).stdout
    return gzip.compress(tar, mtime=0), tree


def test_the_content_tree_id_is_gits_tree_of_the_tag(tmp_path):
    data, tree = _git_archive(tmp_path, "pkg-1.0", {"a.c": "int a;\n", "sub/b.h": "#x\n"})
    (tmp_path / "pkg-1.0.tar.gz").write_bytes(data)
    assert tree_id(tmp_path / "pkg-1.0.tar.gz") == tree
    # Another compression of the same files (GitHub's bytes differ): same content, same pin.
    (tmp_path / "again.tar.gz").write_bytes(gzip.compress(gzip.decompress(data), mtime=7))
    assert (tmp_path / "again.tar.gz").read_bytes() != data
    assert tree_id(tmp_path / "again.tar.gz") == tree


def test_one_changed_byte_or_mode_changes_the_tree(tmp_path):
    _, tree = _git_archive(tmp_path, "pkg-1.0", {"a.c": "int a;\n"})
    changed, other = _git_archive(tmp_path, "pkg-1.1", {"a.c": "int b;\n"})
    assert other != tree
    (tmp_path / "x.tar.gz").write_bytes(changed)
    comp = {"tree": tree, "url": "https://example.com/x.tar.gz"}
    problem = pin_problem("pkg", comp, tmp_path / "x.tar.gz")
    assert problem == f"artifact x.tar.gz (pkg): tree mismatch: expected {tree}, actual {other}"


def test_a_file_that_is_no_archive_is_named_unreadable(tmp_path):
    (tmp_path / "x.tar.gz").write_bytes(b"<html>rate limited</html>")
    problem = pin_problem("pkg", {"tree": "a" * 40}, tmp_path / "x.tar.gz")
    assert "tree mismatch: expected " + "a" * 40 + ", actual unreadable" in problem


def _build_offline(mirror):
    return subprocess.run([sys.executable, "-m", "buildkit.cli", "build", "pytorch", "--profile",
                           "offline", "--variant", "ec2", "--artifacts", str(mirror),
                           "--out", str(mirror.parent / "build")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "EFAKIT_IMDS": "off",
                               "DOCKER_HOST": "unix:///nonexistent/efakit-test.sock"})


def _stand_in_mirror(tmp_path):
    """A mirror holding every source archive of the offline spec, under its real name,
    with made-up content."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, comp in OFFLINE.components.items():
        if comp.get("url"):
            data, _ = _git_archive(tmp_path, name, {"README": f"not really {name}\n"})
            (mirror / comp["file"]).write_bytes(data)
    return mirror


def test_a_tampered_archive_stops_the_build_naming_both_trees(tmp_path):
    mirror = _stand_in_mirror(tmp_path)
    proc = _build_offline(mirror)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    want = OFFLINE.components["libfabric"]["tree"]
    have = tree_id(mirror / "libfabric-2.6.0.tar.gz")
    assert (f"artifact libfabric-2.6.0.tar.gz (libfabric): tree mismatch: expected {want}, "
            f"actual {have}") in line
    assert not (tmp_path / "build").exists()  # nothing rendered, nothing built or tagged


def test_a_missing_mirror_entry_stops_the_build_naming_the_pin(tmp_path):
    mirror = _stand_in_mirror(tmp_path)
    (mirror / "gdrcopy-2.6.tar.gz").unlink()
    proc = _build_offline(mirror)
    assert proc.returncode == 2 and "\n" not in proc.stderr.strip()
    want = OFFLINE.components["gdrcopy"]["tree"]
    assert (f"artifact gdrcopy-2.6.tar.gz (gdrcopy): missing from the mirror {mirror} "
            f"(expected tree {want}") in proc.stderr


@pytest.mark.skipif(not SHARED_SOURCES.is_dir(), reason="no ../shared/artifacts/sources here")
def test_an_archive_of_another_tag_is_refused(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for comp in OFFLINE.components.values():
        if comp.get("url"):
            shutil.copy(SHARED_SOURCES / comp["file"], mirror / comp["file"])
    assert pin_problem("libfabric", OFFLINE.components["libfabric"],
                       mirror / "libfabric-2.6.0.tar.gz") is None
    # GDRCopy's archive where nccl-tests' should be: a real archive, of the wrong tag.
    shutil.copy(SHARED_SOURCES / "gdrcopy-2.6.tar.gz", mirror / "nccl-tests-2.19.6.tar.gz")
    proc = _build_offline(mirror)
    assert proc.returncode == 2
    assert ("artifact nccl-tests-2.19.6.tar.gz (nccl_tests): tree mismatch: expected "
            f"{OFFLINE.components['nccl_tests']['tree']}, actual "
            f"{OFFLINE.components['gdrcopy']['tree']}") in proc.stderr


def test_fetching_from_a_local_source_mirror_checks_the_pin_and_leaves_nothing(
        tmp_path, monkeypatch):
    sources = _stand_in_mirror(tmp_path)
    monkeypatch.setenv("EFAKIT_SOURCES", str(sources))
    mirror = tmp_path / "filled"
    mirror.mkdir()
    with pytest.raises(MirrorError, match=r"tree mismatch: expected [0-9a-f]{40}, actual"):
        fetch_downloads(OFFLINE, mirror, update_pins=False)
    assert list(mirror.iterdir()) == []  # the bad copy is not left half-accepted
    computed = fetch_downloads(OFFLINE, mirror, update_pins=True)
    assert set(computed) == {n for n, c in OFFLINE.components.items() if c.get("url")}


def test_the_in_build_check_takes_tree_pins(tmp_path):
    data, tree = _git_archive(tmp_path, "pkg-1.0", {"a.c": "int a;\n"})
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "pkg.tar.gz").write_bytes(data)
    proc, dest = _fetch(tmp_path, "pkg.tar.gz", f"tree:{tree}")
    assert proc.returncode == 0 and f"tree ok ({tree})" in proc.stdout and dest.exists()
    proc, dest = _fetch(tmp_path, "pkg.tar.gz", "tree:" + "0" * 40)
    assert proc.returncode == 1 and not dest.exists()
    assert f"artifact pkg.tar.gz: tree mismatch: expected {'0' * 40}, actual {tree}" \
        in proc.stderr


def test_the_in_build_check_takes_sha512_pins(tmp_path):
    import hashlib

    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "rel.tar.gz").write_bytes(b"release tarball\n")
    digest = hashlib.sha512(b"release tarball\n").hexdigest()
    proc, _ = _fetch(tmp_path, "rel.tar.gz", f"sha512:{digest}")
    assert proc.returncode == 0 and "sha512 ok" in proc.stdout
    proc, _ = _fetch(tmp_path, "rel.tar.gz", "sha512:" + "0" * 128)
    assert proc.returncode == 1 and f"sha512 mismatch: expected {'0' * 128}, actual {digest}" \
        in proc.stderr


def test_tar_members_outside_the_top_folder_are_not_extracted_outside(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "evil.tar.gz").write_bytes(buf.getvalue())
    assert tree_id(tmp_path / "evil.tar.gz").startswith("unreadable")
    assert not (tmp_path / "escape.txt").exists()
