"""Source archives pinned by content tree: the same pin for a git archive and GitHub's
tag archive, checked on the host before a build and again inside it.  A tampered
archive, an archive of another tag, and a missing mirror entry each give one line
naming the artifact, the expected and the actual digest, and no build starts."""

import gzip
import hashlib
import io
import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from buildkit.mirror import (
    MirrorError,
    artifact_name,
    check_mirror,
    check_wheels,
    fetch_downloads,
    pin_problem,
    tree_id,
)
from buildkit.spec import load_spec
from tests import procs
from tests.conftest import ROOT
from tests.test_artifact_scripts import _fetch

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
        procs.run(["git", *cmd], cwd=repo, check=True, env=GIT_ENV)
    tree = procs.run(["git", "rev-parse", "HEAD^{tree}"], cwd=repo, check=True,
                     capture_output=True, text=True).stdout.strip()
    tar = procs.run(["git", "archive", "--format=tar", f"--prefix={name}/", "HEAD"],
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


def _build_offline(mirror, home=None):
    return procs.run([sys.executable, "-m", "buildkit.cli", "build", "pytorch", "--profile",
                      "offline", "--variant", "ec2", "--artifacts", str(mirror),
                      "--out", str(mirror.parent / "build")],
                     capture_output=True, text=True, cwd=ROOT, timeout=120,
                     env={**os.environ, "EFAKIT_IMDS": "off",
                               "DOCKER_HOST": "unix:///nonexistent/efakit-test.sock",
                     **({"EFAKIT_HOME": str(home)} if home else {})})


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


def _home_with_pins(tmp_path, mirror):
    """An EFAKIT_HOME whose offline spec pins the stand-in archives of `mirror` by their
    real tree ids, so a real build command checks them (nothing from ../shared)."""
    home = tmp_path / "home"
    (home / "images").mkdir(parents=True)
    (home / "templates").symlink_to(ROOT / "templates")
    text = (ROOT / "images" / "pytorch.yaml").read_text()
    for comp in OFFLINE.components.values():
        if comp.get("url"):
            text = text.replace(comp["tree"], tree_id(mirror / comp["file"]))
    (home / "images" / "pytorch.yaml").write_text(text)
    return home


def test_an_archive_of_another_tag_is_refused(tmp_path):
    mirror = _stand_in_mirror(tmp_path)
    home = _home_with_pins(tmp_path, mirror)
    spec = load_spec(home / "images" / "pytorch.yaml", profile="offline")
    assert check_mirror(spec, mirror) == []  # every archive matches its pin
    # GDRCopy's archive where nccl-tests' should be: a real archive, of the wrong tag.
    shutil.copy(mirror / "gdrcopy-2.6.tar.gz", mirror / "nccl-tests-2.19.6.tar.gz")
    proc = _build_offline(mirror, home)
    assert proc.returncode == 2 and "\n" not in proc.stderr.strip(), proc.stderr
    assert ("artifact nccl-tests-2.19.6.tar.gz (nccl_tests): tree mismatch: expected "
            f"{spec.components['nccl_tests']['tree']}, actual "
            f"{spec.components['gdrcopy']['tree']}") in proc.stderr
    assert not (tmp_path / "build").exists()


def test_check_mirror_names_a_download_whose_sha256_does_not_match(tmp_path):
    """The production spec pins the EFA installer tarball by the publisher's sha256."""
    production = load_spec(ROOT / "images" / "pytorch.yaml")
    installer = production.components["efa_installer"]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for comp in production.components.values():
        if comp.get("url"):
            (mirror / artifact_name(comp)).write_bytes(b"<html>rate limited</html>")
    name = artifact_name(installer)
    actual = hashlib.sha256(b"<html>rate limited</html>").hexdigest()
    problems = check_mirror(production, mirror)
    assert (f"artifact {name} (efa_installer): sha256 mismatch: expected "
            f"{installer['sha256']}, actual {actual}") in problems


@pytest.mark.parametrize("kind", ["sha256", "sha512"])
def test_a_digest_pin_passes_only_the_exact_bytes(tmp_path, kind):
    (tmp_path / "rel.tar.gz").write_bytes(b"release tarball\n")
    good = hashlib.new(kind, b"release tarball\n").hexdigest()
    assert pin_problem("rel", {kind: good}, tmp_path / "rel.tar.gz") is None
    (tmp_path / "rel.tar.gz").write_bytes(b"release tarball, one byte changed\n")
    have = hashlib.new(kind, b"release tarball, one byte changed\n").hexdigest()
    assert pin_problem("rel", {kind: good}, tmp_path / "rel.tar.gz") == \
        f"artifact rel.tar.gz (rel): {kind} mismatch: expected {good}, actual {have}"


def _wheel_mirror(tmp_path, directory: str = "wheels") -> tuple:
    """A mirror with one wheel pinned by a requirements file, as fetch-artifacts writes it."""
    wheels = tmp_path / "mirror" / directory
    wheels.mkdir(parents=True)
    wheel = wheels / "demo_pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK demo wheel")
    (wheels / "requirements-base.txt").write_text(
        "# base: pinned by efakit fetch-artifacts\n"
        f"demo-pkg==1.0 --hash=sha256:{hashlib.sha256(b'PK demo wheel').hexdigest()}\n")
    return tmp_path / "mirror", wheel


@pytest.mark.parametrize("directory", ["wheels", "toolchain"])
def test_check_wheels_names_a_swapped_wheel(tmp_path, directory):
    mirror, wheel = _wheel_mirror(tmp_path, directory)
    assert check_wheels(mirror) == []
    want = hashlib.sha256(b"PK demo wheel").hexdigest()
    wheel.write_bytes(b"PK another wheel")
    have = hashlib.sha256(b"PK another wheel").hexdigest()
    assert check_wheels(mirror) == [f"artifact {wheel.name}: sha256 mismatch: expected {want}, "
                                    f"actual {have}"]


def test_check_wheels_names_a_missing_wheel(tmp_path):
    mirror, wheel = _wheel_mirror(tmp_path)
    wheel.unlink()
    assert check_wheels(mirror) == [f"artifact demo-pkg==1.0: missing from {mirror / 'wheels'}"]


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


def test_tar_members_outside_the_top_folder_are_refused_not_extracted(tmp_path):
    """More member kinds, sizes and bounds: tests/test_archives.py."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "evil.tar.gz").write_bytes(buf.getvalue())
    assert pin_problem("evil", {"tree": "a" * 40}, tmp_path / "evil.tar.gz") == \
        "artifact evil.tar.gz (evil): refused, its tree not computed (expected " + "a" * 40 \
        + "): member '../escape.txt': a '..' component"
    assert not (tmp_path / "escape.txt").exists()


# --- the local source mirror, the temporary copy, the exit status -----------------------

def _fetch_artifacts(mirror, sources, timeout=60):
    return procs.run([sys.executable, "-m", "buildkit.cli", "fetch-artifacts", "pytorch",
                      "--profile", "offline", str(mirror)], capture_output=True, text=True,
                     cwd=ROOT, timeout=timeout,
                     env={**os.environ, "EFAKIT_IMDS": "off", "EFAKIT_SOURCES": str(sources),
                          "http_proxy": "http://127.0.0.1:9", "https_proxy":
                          "http://127.0.0.1:9", "no_proxy": ""})


def test_fetch_artifacts_refuses_a_tampered_archive_naming_it_exit_2(tmp_path):
    """README: a tampered archive is one line naming the artifact, the expected and the
    actual digest, exit 2 (it was exit 1, naming the temporary `.part` file: attack-1
    W-2), and the mirror is left as it was."""
    sources = _stand_in_mirror(tmp_path)
    mirror = tmp_path / "filled"
    proc = _fetch_artifacts(mirror, sources)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    first = next(n for n, c in OFFLINE.components.items() if c.get("url"))
    file = OFFLINE.components[first]["file"]
    want, have = OFFLINE.components[first]["tree"], tree_id(sources / file)
    assert line == (f"efakit: error: artifact {file} from {sources / file} ({first}): tree "
                    f"mismatch: expected {want}, actual {have}")
    assert ".part" not in proc.stderr and "Traceback" not in proc.stderr
    assert list(mirror.iterdir()) == []


def _not_a_file(kind: str, at):
    if kind == "fifo":
        os.mkfifo(at)
    elif kind == "directory":
        at.mkdir()
    elif kind == "dev-zero":
        at.symlink_to("/dev/zero")
    else:
        at.symlink_to(at.parent / "nowhere")


@pytest.mark.parametrize("kind", ["fifo", "directory", "dev-zero", "dangling"])
def test_a_source_mirror_entry_that_is_no_regular_file_is_refused_not_downloaded(
        tmp_path, monkeypatch, kind):
    """attack-1 SA-14: a FIFO or a link to /dev/zero at the artifact's name in
    EFAKIT_SOURCES was skipped, and the artifact silently downloaded from the internet.
    Now: one line, exit 2, without blocking, and no download is tried."""
    import urllib.request

    sources = _stand_in_mirror(tmp_path)
    first = next(c["file"] for c in OFFLINE.components.values() if c.get("url"))
    (sources / first).unlink()
    _not_a_file(kind, sources / first)
    monkeypatch.setenv("EFAKIT_SOURCES", str(sources))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded"))
    mirror = tmp_path / "filled"
    mirror.mkdir()
    with pytest.raises(MirrorError) as caught:
        fetch_downloads(OFFLINE, mirror, update_pins=True)
    assert caught.value.code == 2 and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{sources / first}: ")
    assert list(mirror.iterdir()) == []


def test_only_an_absent_source_mirror_entry_is_downloaded_and_says_so(tmp_path, monkeypatch,
                                                                     capsys):
    import urllib.error
    import urllib.request

    sources = _stand_in_mirror(tmp_path)
    name, comp = next((n, c) for n, c in OFFLINE.components.items() if c.get("url"))
    (sources / comp["file"]).unlink()
    asked = []

    def offline(url, timeout):
        asked.append(url)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setenv("EFAKIT_SOURCES", str(sources))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    mirror = tmp_path / "filled"
    mirror.mkdir()
    with pytest.raises(MirrorError, match=f"cannot download {name} from") as caught:
        fetch_downloads(OFFLINE, mirror, update_pins=True)
    assert asked == [comp["url"]] and caught.value.code == 1
    assert f"{comp['file']}: not in a local source mirror; downloading" in capsys.readouterr().err
    assert list(mirror.iterdir()) == []


def test_efakit_sources_that_is_not_a_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("EFAKIT_SOURCES", str(tmp_path / "typo"))
    with pytest.raises(MirrorError, match="EFAKIT_SOURCES=.*typo: not a directory") as caught:
        fetch_downloads(OFFLINE, tmp_path, update_pins=True)
    assert caught.value.code == 2


def test_sigterm_during_a_fetch_leaves_no_temporary_copy(tmp_path):
    """attack-1 H-1: a fetch killed by SIGTERM (timeout's signal) left its `.part` file."""
    sources = _stand_in_mirror(tmp_path)
    mirror = tmp_path / "filled"
    mirror.mkdir()
    script = (
        "import os, signal, sys, time\n"
        "from pathlib import Path\n"
        "import buildkit.mirror as m\n"
        "def slow(*args, **kwargs):\n"
        "    print('checking', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "m.pin_problem = slow\n"
        "from tests.test_mirror import OFFLINE\n"
        f"m.fetch_downloads(OFFLINE, Path({str(mirror)!r}), update_pins=False)\n")
    proc = procs.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                     timeout=60, env={**os.environ, "EFAKIT_SOURCES": str(sources)})
    assert "checking" in proc.stdout and proc.returncode == 130, proc.stderr
    assert list(mirror.iterdir()) == []


def test_a_stale_part_file_a_kill_left_is_never_opened_nor_trusted(tmp_path, monkeypatch):
    """SIGKILL cannot be caught: its `.part` stays, under a name no later run opens; the
    next fetch writes a copy of its own, and the pre-build check looks only at the
    artifacts' names."""
    sources = _stand_in_mirror(tmp_path)
    monkeypatch.setenv("EFAKIT_SOURCES", str(sources))
    mirror = tmp_path / "filled"
    mirror.mkdir()
    files = [c["file"] for c in OFFLINE.components.values() if c.get("url")]
    for file in files:
        (mirror / f".{file}.k1ll3d00.part").write_bytes(b"half a download")
    fetch_downloads(OFFLINE, mirror, update_pins=True)
    for file in files:
        assert (mirror / file).read_bytes() == (sources / file).read_bytes()
        assert (mirror / f".{file}.k1ll3d00.part").read_bytes() == b"half a download"
    assert sorted(p.name for p in mirror.iterdir()) == sorted(
        files + [f".{f}.k1ll3d00.part" for f in files])


@pytest.mark.parametrize("kind", ["file", "link-to-file"])
def test_a_mirror_path_that_is_a_file_is_refused_as_such(tmp_path, kind):
    """attack-1 W-4: `fetch-artifacts pytorch FILE` said "FILE: File exists"."""
    (tmp_path / "plain").write_text("keep\n")
    mirror = tmp_path / "plain"
    if kind == "link-to-file":
        mirror = tmp_path / "link"
        mirror.symlink_to(tmp_path / "plain")
    proc = _fetch_artifacts(mirror, _stand_in_mirror(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        f"efakit: error: artifact mirror {mirror}: exists and is not a directory"
    assert (tmp_path / "plain").read_text() == "keep\n"


def test_a_half_written_wheel_a_kill_left_is_replaced_not_pinned(tmp_path, monkeypatch):
    """fill_wheels copied a wheel to its final name only when the name was free: a copy
    cut short by a kill was then trusted by every later run, and its digest pinned.
    Now each wheel arrives through a temporary file renamed whole, and a wheel at the
    name that differs from the download is replaced."""
    import buildkit.mirror as mirror_module

    whole = b"PK" + os.urandom(4096)
    name = "demo_pkg-1.0-py3-none-any.whl"

    def pip(*args: str) -> None:  # stands in for `pip download --dest DIR`: one wheel
        if args[0] == "download":
            dest = args[args.index("--dest") + 1]
            (Path(dest) / name).write_bytes(whole)

    monkeypatch.setattr(mirror_module, "_pip", pip)
    mirror = tmp_path / "mirror"
    (mirror / "wheels").mkdir(parents=True)
    (mirror / "wheels" / name).write_bytes(whole[:100])  # what a killed copy left
    mirror_module.fill_wheels(OFFLINE, mirror)
    assert (mirror / "wheels" / name).read_bytes() == whole
    digest = hashlib.sha256(whole).hexdigest()
    assert f"demo-pkg==1.0 --hash=sha256:{digest}" in \
        (mirror / "wheels" / "requirements-base.txt").read_text()
    assert check_wheels(mirror) == []
    assert not [p for p in mirror.rglob("*") if p.name.endswith(".part")]


@pytest.mark.parametrize("how", ["same", "link", "inside", "dotted"])
def test_the_mirror_may_not_be_the_source_mirror(tmp_path, how):
    """attack-2 SA-10: `EFAKIT_SOURCES=src fetch-artifacts pytorch src` (or a link to
    src) rewrote the input in place; refused before anything is fetched, one line,
    exit 2, the sources untouched."""
    sources = _stand_in_mirror(tmp_path)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sources.iterdir()
              if p.is_file()}
    mirror = {"same": sources, "link": tmp_path / "mlink", "inside": sources / "sub",
              "dotted": sources / "sub" / ".."}[how]
    if how == "link":
        mirror.symlink_to(sources)
    proc = _fetch_artifacts(mirror, sources)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "an output may not replace an input" in proc.stderr
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sources.iterdir()
            if p.is_file()} == before
    assert not (sources / "sub").exists()
