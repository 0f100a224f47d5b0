"""A source archive's tree id is computed from the tar stream, never from an unpack.

Promises (verify/boundary/archives.py): the streamed id is git's own tree for any
archive of files, symlinks and `.gitattributes` end-of-line rules (Hypothesis, against
`git write-tree` and `git archive`) and for every real archive of the source mirror
(against the unpack-and-`git add` check it replaces); a member an archive must not
hold is refused in one line while the stream is read, its size by what the header
declares (a sparse 8 GB member in a 150-byte archive takes milliseconds), and nothing
is written anywhere; fetch-artifacts never writes through a link left in the mirror.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildkit.mirror import MirrorError, fetch_downloads, pin_problem
from buildkit.spec import load_spec
from tests.conftest import ROOT, missing
from verify.boundary import archives
from verify.boundary.archives import ArchiveError, tree_id

SOURCES = ROOT.parent / "shared" / "artifacts" / "sources"
OFFLINE = load_spec(ROOT / "images" / "pytorch.yaml", profile="offline")
SOURCE_ARCHIVES = sorted(c["file"] for c in OFFLINE.components.values() if c.get("url"))
GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
EIGHT_GB = 8 << 30


def _git(*args: str, cwd: Path, env: dict | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=cwd, env=env or GIT_ENV, check=True,
                          capture_output=True).stdout


def _unpacked_tree(archive: Path, work: Path) -> str:
    """What the pin check computed before streaming: unpack, `git add -A`, write-tree."""
    work.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(work)], check=True)
    (top,) = work.iterdir()
    env = {**GIT_ENV, "GIT_DIR": str(work.parent / f"{work.name}.git"), "GIT_WORK_TREE": str(top)}
    for args in (["init", "-q"], ["add", "-A", "-f"]):
        _git(*args, cwd=top, env=env)
    return _git("write-tree", cwd=top, env=env).decode().strip()


@pytest.mark.parametrize("name", SOURCE_ARCHIVES)
def test_every_archive_of_the_source_mirror_streams_to_its_pin(tmp_path, name):
    """libfabric 2.6 marks *.cmd eol=crlf: its archive holds CRLF its tree does not."""
    archive = SOURCES / name
    if not archive.is_file():
        missing("sources", f"no {archive} (the air-gapped source mirror beside the checkout)")
    pin = next(c["tree"] for c in OFFLINE.components.values() if c.get("file") == name)
    assert tree_id(archive) == _unpacked_tree(archive, tmp_path / "unpacked") == pin


# --- generated archives against git ----------------------------------------------------

_NAMES = st.text("abx.-_", min_size=1, max_size=5).filter(
    lambda n: n not in (".", "..") and n.rstrip(". ").lower() not in (".git", "git~1"))
_CHUNKS = st.sampled_from([b"a", b"line", b"\n", b"\r\n", b"\r", b"\0", b"\x1a", b"\x7f",
                           b"\x01", b"\x1b", b"\xc3\xa9", b"$Id$"])
_CONTENT = st.lists(_CHUNKS, max_size=12).map(b"".join)
_PATTERNS = ["*", "*.x", "a*", "/a", "b/*", "**/a*", "b/**", "[ab]*", "[!a]*", "?", "*.X",
             "x/", "!a", "[a-c]x", "\\a"]
_STATES = ["text", "-text", "!text", "text=auto", "eol=crlf", "eol=lf", "binary", "-binary",
           "crlf", "-crlf", "crlf=input", "diff", "-diff"]
_ATTR_LINES = st.lists(st.tuples(st.sampled_from(_PATTERNS),
                                 st.lists(st.sampled_from(_STATES), min_size=1, max_size=3)),
                       max_size=4).map(lambda rows: "".join(f"{p} {' '.join(s)}\n"
                                                            for p, s in rows).encode())
_LINK_TARGETS = st.sampled_from(["a", "b/a", "../a", "x.x", "missing", "b/"])
_FILE = st.tuples(st.just("file"), _CONTENT, st.booleans())
_LINK = st.tuples(st.just("link"), _LINK_TARGETS)
_TREES = st.recursive(
    st.dictionaries(_NAMES, st.one_of(_FILE, _LINK), max_size=4),
    lambda children: st.dictionaries(_NAMES, st.one_of(_FILE, _LINK, children), max_size=4),
    max_leaves=12)


def _write(tree: dict, at: Path, attributes: list[bytes]) -> None:
    at.mkdir(parents=True, exist_ok=True)
    if attributes:
        (at / ".gitattributes").write_bytes(attributes[0])
    for name, entry in tree.items():
        path = at / name
        if isinstance(entry, dict):
            _write(entry, path, attributes[1:])
        elif entry[0] == "file":
            path.write_bytes(entry[1])
            path.chmod(0o755 if entry[2] else 0o644)
        else:
            path.symlink_to(entry[1])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(tree=_TREES, attributes=st.lists(_ATTR_LINES, max_size=2))
def test_the_streamed_tree_is_gits_tree_of_the_archived_files(tmp_path_factory, tree,
                                                              attributes):
    """`git archive` applies the tree's .gitattributes on the way out (eol=crlf writes
    CRLF), `git add` applies them on the way in: the streamed id is what `git add` gives
    for the unpacked archive (which is the archived tree itself, but where git's own
    round trip is not exact: `* text` checks in "\\r\\r\\n" as "\\r\\n", and that as "\\n")."""
    work = tmp_path_factory.mktemp("git")
    _write(tree, work / "repo", attributes)
    _git("init", "-q", cwd=work / "repo")
    _git("add", "-A", "-f", cwd=work / "repo")
    archived = _git("write-tree", cwd=work / "repo").decode().strip()
    tar = _git("archive", "--format=tar", "--prefix=pkg-1.0/", archived, cwd=work / "repo")
    (work / "pkg.tar.gz").write_bytes(gzip.compress(tar, mtime=0))
    assert tree_id(work / "pkg.tar.gz") == _unpacked_tree(work / "pkg.tar.gz", work / "unpacked")
    shutil.rmtree(work)


def test_a_tag_archive_with_eol_crlf_files_streams_to_the_tags_tree(tmp_path):
    """libfabric 2.6's case, here without ../shared: `*.cmd eol=crlf` makes its tag
    archive hold CRLF in .cmd files that its tree holds with LF; a `text=auto` binary
    with CRLF bytes is left as it is."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / ".gitattributes").write_bytes(b"*.cmd eol=crlf\n*.bin text=auto\n")
    (repo / "scripts" / "run.cmd").write_bytes(b"@echo off\nrun\n")
    (repo / "blob.bin").write_bytes(b"\0\r\nraw\r\n")
    _git("init", "-q", cwd=repo)
    _git("add", "-A", cwd=repo)
    want = _git("write-tree", cwd=repo).decode().strip()
    tar = _git("archive", "--format=tar", "--prefix=libfabric-2.6.0/", want, cwd=repo)
    assert b"@echo off\r\nrun\r\n" in tar
    (tmp_path / "x.tar.gz").write_bytes(gzip.compress(tar, mtime=0))
    assert tree_id(tmp_path / "x.tar.gz") == want


def test_git_sorts_a_directory_as_if_its_name_ended_in_a_slash(tmp_path):
    """Hand-picked: `a` (a directory) sorts after `a-b` and `a.c` but before `a0`, because
    git compares it as `a/`; a symlink is mode 120000 with its target as the blob."""
    repo = tmp_path / "repo"
    (repo / "a").mkdir(parents=True)
    for name in ("a/x", "a-b", "a.c", "a0"):
        (repo / name).write_text(name)
    (repo / "ln").symlink_to("a/x")
    _git("init", "-q", cwd=repo)
    _git("add", "-A", cwd=repo)
    want = _git("write-tree", cwd=repo).decode().strip()
    (tmp_path / "x.tar").write_bytes(_git("archive", "--format=tar", "--prefix=p/", want,
                                          cwd=repo))
    assert tree_id(tmp_path / "x.tar") == want


def test_an_archive_with_several_top_entries_is_the_tree_of_its_root(tmp_path):
    (tmp_path / "repo" / "src").mkdir(parents=True)
    (tmp_path / "repo" / "src" / "a.c").write_text("int a;\n")
    (tmp_path / "repo" / "README").write_text("r\n")
    _git("init", "-q", cwd=tmp_path / "repo")
    _git("add", "-A", cwd=tmp_path / "repo")
    want = _git("write-tree", cwd=tmp_path / "repo").decode().strip()
    (tmp_path / "x.tar").write_bytes(_git("archive", "--format=tar", want,
                                          cwd=tmp_path / "repo"))
    assert tree_id(tmp_path / "x.tar") == want


# --- members an archive must not hold --------------------------------------------------

def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "",
          mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, size, link, mode
    return info


def _sparse_header(name: str, real_size: int) -> bytes:
    """An old-GNU sparse member ('S'): no data stored, `real_size` bytes when unpacked
    (GNU tar writes these for files that are mostly holes)."""
    block = bytearray(_info(name).tobuf(tarfile.GNU_FORMAT))
    block[156:157] = tarfile.GNUTYPE_SPARSE
    block[483:495] = tarfile.itn(real_size, 12, tarfile.GNU_FORMAT)
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _archive(path: Path, members: list, raw_blocks: bytes = b"") -> Path:
    """A gzipped tar: pkg/ with a normal file, then `members` ((TarInfo, data) pairs),
    then raw header blocks written as they are."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_info("pkg/", tarfile.DIRTYPE, mode=0o755))
        tar.addfile(_info("pkg/a.c", size=7), io.BytesIO(b"int a;\n"))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    body = buf.getvalue()
    if raw_blocks:  # before the end-of-archive zero blocks
        end = body.rstrip(b"\0")
        end += b"\0" * (-len(end) % 512)
        body = end + raw_blocks + b"\0" * 1024
    path.write_bytes(gzip.compress(body, mtime=0))
    return path


def _malicious(kind: str, outside: Path) -> tuple[list, bytes]:
    """(members, raw blocks) of one member kind that must be refused."""
    victim = str(outside / "victim")
    return {
        "absolute": ([(_info(victim, size=1), b"x")], b""),
        "dotdot": ([(_info("pkg/../../victim", size=1), b"x")], b""),
        "dotdot-inner": ([(_info("pkg/sub/../../../victim", size=1), b"x")], b""),
        "link-out": ([(_info("pkg/l", tarfile.SYMTYPE, link="../../victim"), None)], b""),
        "link-absolute": ([(_info("pkg/l", tarfile.SYMTYPE, link=victim), None)], b""),
        "through-link": ([(_info("pkg/sub/", tarfile.DIRTYPE, mode=0o755), None),
                          (_info("pkg/l", tarfile.SYMTYPE, link="sub"), None),
                          (_info("pkg/l/x", size=1), b"x")], b""),
        "hard-link": ([(_info("pkg/h", tarfile.LNKTYPE, link="pkg/a.c"), None)], b""),
        "char-device": ([(_info("pkg/null", tarfile.CHRTYPE), None)], b""),
        "block-device": ([(_info("pkg/sda", tarfile.BLKTYPE), None)], b""),
        "fifo": ([(_info("pkg/fifo", tarfile.FIFOTYPE), None)], b""),
        "twice": ([(_info("pkg/a.c", size=1), b"x")], b""),
        "dot-git": ([(_info("pkg/.git/config", size=1), b"x")], b""),
        "huge": ([], _info("pkg/huge", size=EIGHT_GB).tobuf(tarfile.GNU_FORMAT)),
        "sparse": ([], _sparse_header("pkg/sparse", EIGHT_GB)),
    }[kind]


KINDS = ["absolute", "dotdot", "dotdot-inner", "link-out", "link-absolute", "through-link",
         "hard-link", "char-device", "block-device", "fifo", "twice", "dot-git", "huge",
         "sparse"]


def _listing(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.lstat().st_mode, p.lstat().st_size)
                  for p in root.rglob("*"))


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(KINDS), before=st.integers(0, 3))
def test_a_member_an_archive_must_not_hold_is_refused_in_one_line_and_nothing_written(
        tmp_path_factory, kind, before):
    root = tmp_path_factory.mktemp("around")
    (root / "outside").mkdir()
    (root / "mirror").mkdir()
    members, raw = _malicious(kind, root / "outside")
    padding = [(_info(f"pkg/pad{i}", size=2), b"p\n") for i in range(before)]
    archive = _archive(root / "mirror" / "x.tar.gz", padding + members, raw)
    seen = _listing(root.parent)  # this test's folders, the archive's and its neighbours
    start = time.monotonic()
    with pytest.raises(ArchiveError) as caught:
        tree_id(archive)
    assert time.monotonic() - start < 2
    assert caught.value.kind == "refused" and "\n" not in str(caught.value)
    problem = pin_problem("x", {"tree": "0" * 40}, archive)
    assert problem.startswith("artifact x.tar.gz (x): refused") and "\n" not in problem
    assert _listing(root.parent) == seen
    assert not (root / "victim").exists() and not (root / "outside" / "victim").exists()


def test_a_sparse_8_gb_member_of_a_150_byte_archive_is_refused_by_its_declared_size(tmp_path):
    members, raw = _malicious("sparse", tmp_path)
    archive = _archive(tmp_path / "sparse.tar.gz", members, raw)
    assert archive.stat().st_size < 200
    start = time.monotonic()
    with pytest.raises(ArchiveError, match=r"'pkg/sparse': declares 8589934592 bytes"):
        tree_id(archive)
    assert time.monotonic() - start < 0.5


@pytest.mark.parametrize("bound, members, match", [
    ("MAX_MEMBERS", [(_info(f"pkg/f{i}", size=0), None) for i in range(10)],
     "more than 5 members"),
    ("MAX_STREAM_BYTES", [(_info("pkg/zeros", size=60_000), b"\0" * 60_000)],
     "more than 0 MiB unpacked"),
    ("MAX_MEMBER_BYTES", [(_info("pkg/big", size=6000), b"b" * 6000)],
     "'pkg/big': declares 6000 bytes"),
])
def test_the_bounds_are_refused_while_reading(tmp_path, monkeypatch, bound, members, match):
    monkeypatch.setattr(archives, bound, {"MAX_MEMBERS": 5, "MAX_STREAM_BYTES": 50_000,
                                          "MAX_MEMBER_BYTES": 5000}[bound])
    with pytest.raises(ArchiveError, match=match) as caught:
        tree_id(_archive(tmp_path / "x.tar.gz", members))
    assert caught.value.kind == "refused"


@pytest.mark.parametrize("attributes, match", [
    (b"*.c ident\n", "the ident attribute is not supported"),
    (b"*.c working-tree-encoding=UTF-16\n", "working-tree-encoding"),
    (b"[attr]crlfy eol=crlf\n*.c crlfy\n", "defines a macro"),
    (b'"a.c" text\n', "quoted pattern"),
    (b"[[:alpha:]]* text\n", r"\[:class:\]"),
])
def test_attributes_the_stream_cannot_apply_as_git_does_are_refused(tmp_path, attributes,
                                                                     match):
    members = [(_info("pkg/.gitattributes", size=len(attributes)), attributes)]
    with pytest.raises(ArchiveError, match=match):
        tree_id(_archive(tmp_path / "x.tar.gz", members))


@pytest.mark.parametrize("data", [b"", b"<html>rate limited</html>", gzip.compress(b"x" * 700)])
def test_a_file_that_is_no_tar_is_unreadable_in_one_line(tmp_path, data):
    (tmp_path / "x.tar.gz").write_bytes(data)
    with pytest.raises(ArchiveError) as caught:
        tree_id(tmp_path / "x.tar.gz")
    assert caught.value.kind == "unreadable" and "\n" not in str(caught.value)


# --- the mirror never writes through a link --------------------------------------------

def test_fetch_artifacts_never_writes_through_a_part_link_left_in_the_mirror(
        tmp_path, monkeypatch):
    """A `.NAME.part` symlink (the temporary name fetch-artifacts once used) pointing at
    a file elsewhere: the file keeps its bytes, pin or no pin."""
    from tests.test_mirror import _stand_in_mirror

    sources = _stand_in_mirror(tmp_path)
    monkeypatch.setenv("EFAKIT_SOURCES", str(sources))
    mirror = tmp_path / "filled"
    mirror.mkdir()
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    for name in SOURCE_ARCHIVES:
        (mirror / f".{name}.part").symlink_to(precious)
    with pytest.raises(MirrorError, match="tree mismatch"):
        fetch_downloads(OFFLINE, mirror, update_pins=False)
    assert precious.read_text() == "keep me\n"
    assert sorted(p.name for p in mirror.iterdir()) == sorted(f".{n}.part"
                                                              for n in SOURCE_ARCHIVES)
    fetch_downloads(OFFLINE, mirror, update_pins=True)
    assert precious.read_text() == "keep me\n"
    for name in SOURCE_ARCHIVES:
        assert (mirror / name).read_bytes() == (sources / name).read_bytes()
        assert (mirror / f".{name}.part").is_symlink()


# --- extraction, where an archive is unpacked at all ------------------------------------

def test_extract_unpacks_files_modes_and_links_whole(tmp_path):
    repo = tmp_path / "repo"
    (repo / "sub" / "deep").mkdir(parents=True)
    (repo / "sub" / "deep" / "a.c").write_bytes(b"int a;\r\n")
    (repo / "run.sh").write_bytes(b"#!/bin/sh\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "link").symlink_to("sub/deep/a.c")
    _git("init", "-q", cwd=repo)
    _git("add", "-A", cwd=repo)
    tree = _git("write-tree", cwd=repo).decode().strip()
    (tmp_path / "x.tar").write_bytes(_git("archive", "--format=tar", "--prefix=pkg/", tree,
                                          cwd=repo))
    archives.extract(tmp_path / "x.tar", tmp_path / "out")
    top = tmp_path / "out" / "pkg"
    assert (top / "sub" / "deep" / "a.c").read_bytes() == b"int a;\r\n"
    assert os.access(top / "run.sh", os.X_OK) and not os.access(top / "sub/deep/a.c", os.X_OK)
    assert os.readlink(top / "link") == "sub/deep/a.c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "repo", "x.tar"]


@pytest.mark.parametrize("kind", KINDS)
def test_extract_refuses_what_tree_id_refuses_and_leaves_nothing(tmp_path, kind):
    (tmp_path / "outside").mkdir()
    members, raw = _malicious(kind, tmp_path / "outside")
    archive = _archive(tmp_path / "x.tar.gz", members, raw)
    seen = _listing(tmp_path)
    with pytest.raises(ArchiveError) as caught:
        archives.extract(archive, tmp_path / "out")
    assert caught.value.kind == "refused" and "\n" not in str(caught.value)
    assert _listing(tmp_path) == seen  # no out/, no temporary folder, no victim


def test_extract_never_replaces_what_is_at_its_destination(tmp_path):
    archive = _archive(tmp_path / "x.tar.gz", [])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine").write_text("keep\n")
    with pytest.raises(ArchiveError, match="cannot write"):
        archives.extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "mine").read_text() == "keep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "x.tar.gz"]


# --- .gitattributes patterns: git's wildmatch in linear time ----------------------------

_GLOB_PIECES = st.sampled_from(["a", "b", ".", "*", "**", "?", "/", "[ab]", "[!a]", "[a-b]",
                                "[b-a]", "[]a]", "\\a", "\\*", "["])
_GLOBS = st.lists(_GLOB_PIECES, min_size=1, max_size=7).map("".join).filter(
    lambda p: not p.startswith(("#", "!", '"', "[attr]")) and not p.endswith("/"))
_GLOB_NAMES = st.lists(st.text("ab.*[", min_size=1, max_size=4).filter(
    lambda c: c not in (".", "..")), min_size=1, max_size=3).map("/".join)


def _our_text_attribute(pattern: str, name: str) -> bool:
    attributes = archives._Attributes({})
    attributes.rules[()] = archives._parse_attributes(f"{pattern} text\n".encode(),
                                                      top_level=True)
    return attributes.lookup(tuple(name.encode().split(b"/"))).get(b"text") is True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=_GLOBS, names=st.lists(_GLOB_NAMES, min_size=1, max_size=8, unique=True))
def test_an_attribute_pattern_matches_the_paths_git_check_attr_matches(tmp_path_factory,
                                                                       pattern, names):
    """The matcher agrees with git's own (`git check-attr`) on `*`, `**`, `?`, `[...]`,
    escapes, anchoring and '/', for generated patterns and paths."""
    repo = tmp_path_factory.mktemp("attr")
    _git("init", "-q", cwd=repo)
    (repo / ".gitattributes").write_text(f"{pattern} text\n")
    out = subprocess.run(["git", "check-attr", "-z", "--stdin", "text"], cwd=repo,
                         env=GIT_ENV, check=True, capture_output=True,
                         input="".join(f"{n}\0" for n in names).encode()).stdout
    fields = out.split(b"\0")
    git_says = {fields[i].decode(): fields[i + 2] == b"set"
                for i in range(0, len(fields) - 2, 3)}
    assert {n: _our_text_attribute(pattern, n) for n in names} == git_says
    shutil.rmtree(repo)


@pytest.mark.parametrize("pattern, name, matches", [
    ("a/*", "a/b/c", False), ("*/c", "a/b/c", False), ("a/*/c", "a/b/c", True),
    ("a/**/c", "a/c", True), ("a/**/c", "a/b/b/c", True), ("**/c", "c", True),
    ("a/**", "a/b/c", True), ("a**c", "a/b/c", False), ("a/?/c", "a/b/c", True),
    ("a[/]b", "a/b", False), ("[!a]/c", "b/c", True), ("*.cmd", "b/x.cmd", True),
    ("/x.cmd", "b/x.cmd", False), ("a[", "a[", False),
])
def test_hand_picked_patterns_match_as_git_check_attr_says(tmp_path, pattern, name, matches):
    """The cases that tell `*` from `**` and a basename rule from a path rule; each was
    checked with `git check-attr` (the property above generates more)."""
    _git("init", "-q", cwd=tmp_path)
    (tmp_path / ".gitattributes").write_text(f"{pattern} text\n")
    git_says = _git("check-attr", "text", "--", name, cwd=tmp_path).endswith(b": set\n")
    assert _our_text_attribute(pattern, name) == git_says == matches


@settings(max_examples=20, deadline=None)
@given(stars=st.integers(1, 40), letter=st.sampled_from("ab."), length=st.integers(1, 4000),
       last=st.sampled_from(["b", "?", "[!a]", "**/b", "/b"]))
def test_an_adversarial_pattern_costs_one_step_per_byte_of_the_name(stars, letter, length,
                                                                    last):
    """`*a*a*...*b` against `aaa...a` backtracks exponentially in a regex translation;
    here a match is a walk over the name, milliseconds at 4,000 bytes and 40 stars."""
    glob = archives._wildmatch((f"*{letter}" * stars + f"*{last}").encode())
    started = time.perf_counter()
    glob.fullmatch(letter.encode() * length)
    assert time.perf_counter() - started < 0.5


def test_the_attack_1_redos_archive_gets_gits_tree_in_well_under_a_second(tmp_path):
    """attack-1 H-1: a 300-byte archive whose .gitattributes holds `*a*a...*a*b` and a
    file named a x 250 held `tree_id` (and fetch-artifacts, and the pre-build check) at
    100% CPU until it was killed."""
    attributes = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b text eol=crlf\n"
    archive = _archive(tmp_path / "gdrcopy-2.6.tar.gz", [
        (_info("pkg/.gitattributes", size=len(attributes)), attributes),
        (_info("pkg/" + "a" * 250, size=6), b"hello\n")])
    started = time.perf_counter()
    tree = tree_id(archive)
    assert time.perf_counter() - started < 1.0
    assert tree == _unpacked_tree(archive, tmp_path / "unpacked")


@pytest.mark.parametrize("bound, value, attributes, match", [
    ("MAX_ATTRIBUTE_RULES", 3, b"a text\nb text\nc text\nd text\n",
     "more than 3 .gitattributes lines"),
    ("MAX_MATCH_STEPS", 10, b"*a* text\n", "over 10 steps"),
    ("MAX_ATTRIBUTE_BYTES", 20, b"# a comment longer than twenty bytes\n", "over 20 bytes"),
])
def test_the_attribute_work_an_archive_asks_for_is_bounded(tmp_path, monkeypatch, bound, value,
                                                           attributes, match):
    monkeypatch.setattr(archives, bound, value)
    members = [(_info("pkg/.gitattributes", size=len(attributes)), attributes),
               (_info("pkg/" + "a" * 20, size=1), b"x")]
    with pytest.raises(ArchiveError, match=match) as caught:
        tree_id(_archive(tmp_path / "x.tar.gz", members))
    assert caught.value.kind == "refused" and "\n" not in str(caught.value)


def test_a_name_nested_deeper_than_the_tree_walk_may_go_is_refused(tmp_path):
    """A file 1,500 directories deep (3 KB of name, under PATH_MAX) made the recursive
    tree hashing raise RecursionError: a traceback in fetch-artifacts."""
    name = "pkg/" + "a/" * 1500 + "f"
    with pytest.raises(ArchiveError, match="nested over 256 directories") as caught:
        tree_id(_archive(tmp_path / "x.tar.gz", [(_info(name, size=1), b"x")]))
    assert caught.value.kind == "refused"
