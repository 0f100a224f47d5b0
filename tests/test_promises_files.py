"""The one reader and the one writer (verify/boundary/files.py), as properties.

* The writer leaves exactly the file it was asked for, whole, in the destination's
  directory, whatever the name; a link planted where its temp file would go is never
  written through; an input is never replaced.
* `refuse_overlap` refuses exactly when an output is an input, or two outputs are the
  same file, however each is named.
* The reader refuses what is no regular file (FIFO, device, directory, a link to one)
  and what is over its cap, without blocking.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verify.boundary import files
from verify.boundary.files import ReadError, SameFileError, WriteError, refuse_overlap

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

file_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
                     min_size=1, max_size=60).filter(
    lambda n: n not in (".", "..") and len(n.encode()) <= 200)


def _fresh(tmp_path: Path) -> Path:
    folder = tmp_path / "case"
    if folder.exists():
        for entry in folder.iterdir():
            entry.unlink()
    else:
        folder.mkdir()
    return folder


@FIXTURE_OK
@given(name=file_names, data=st.binary(max_size=2000), old=st.none() | st.binary(max_size=50))
def test_the_writer_leaves_exactly_the_file(tmp_path, name, data, old):
    folder = _fresh(tmp_path)
    outside = sorted(p.name for p in tmp_path.iterdir())
    if old is not None:
        (folder / name).write_bytes(old)
    files.write_atomic(folder / name, data)
    assert [p.name for p in folder.iterdir()] == [name]
    assert (folder / name).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == outside


def test_a_link_planted_at_the_temp_name_is_not_written_through(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / ".r.json.aaaa.tmp").symlink_to(victim)
    tokens = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(files.secrets, "token_hex", lambda _n: next(tokens))
    files.write_atomic(folder / "r.json", "new")
    assert victim.read_text() == "keep" and (folder / "r.json").read_text() == "new"
    assert sorted(p.name for p in folder.iterdir()) == [".r.json.aaaa.tmp", "r.json"]


def test_an_input_is_never_replaced(tmp_path):
    log = tmp_path / "in.log"
    log.write_text("log")
    (tmp_path / "hard").hardlink_to(log)
    for alias in (log, tmp_path / "hard", f"{tmp_path}/./in.log"):
        with pytest.raises(WriteError, match="an output may not replace an input"):
            files.write_atomic(alias, "x", inputs=[log])
    assert log.read_text() == "log" and sorted(p.name for p in tmp_path.iterdir()) == [
        "hard", "in.log"]


# --- refuse_overlap: exactly when two names are one file -------------------------------


ALIASES = ["plain", "dot", "symlink", "hardlink", "absolute"]


@FIXTURE_OK
@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(ALIASES)), min_size=1,
                max_size=3),
       st.lists(st.tuples(st.sampled_from("abcde"), st.sampled_from(ALIASES)), min_size=1,
                max_size=3))
def test_refuse_overlap_refuses_exactly_the_same_files(tmp_path, inputs, outputs):
    folder = tmp_path / "o"
    folder.mkdir(exist_ok=True)
    for letter in "abc":  # inputs exist; d and e are new paths
        (folder / letter).write_text(letter)

    def name(letter: str, how: str) -> str:
        if how == "dot":
            return f"{folder}/./{letter}"
        if how == "absolute" or letter in "de":
            return str(folder / letter)
        if how == "plain":
            return str(Path(os.path.relpath(folder / letter)))
        alias = folder / f"{how}-{letter}"
        if not os.path.lexists(alias):
            (alias.symlink_to(letter) if how == "symlink" else alias.hardlink_to(folder / letter))
        return str(alias)

    ins = {letter for letter, _ in inputs}
    outs = [letter for letter, _ in outputs]
    expected = bool(ins & set(outs)) or len(set(outs)) < len(outs)
    try:
        refuse_overlap([(f"--out{i}", name(*o)) for i, o in enumerate(outputs)],
                       [name(*i) for i in inputs])
        refused = False
    except SameFileError as exc:
        assert "\n" not in str(exc)
        refused = True
    assert refused == expected


# --- the reader: regular files only, capped, never blocking ----------------------------


@pytest.mark.parametrize("kind", ["fifo", "dir", "/dev/zero", "/dev/null", "link-to-fifo",
                                  "sparse", "missing"])
def test_the_reader_refuses_what_is_no_small_regular_file(tmp_path, kind):
    path = tmp_path / "x"
    if kind in ("fifo", "link-to-fifo"):
        os.mkfifo(tmp_path / "fifo")
        path = tmp_path / "fifo"
        if kind == "link-to-fifo":
            path = tmp_path / "link"
            path.symlink_to("fifo")
    elif kind == "dir":
        path.mkdir()
    elif kind == "sparse":
        with path.open("wb") as handle:
            handle.truncate(files.MAX_INPUT_BYTES + 1)
    elif kind.startswith("/dev"):
        path = Path(kind)
    started = time.monotonic()
    with pytest.raises(ReadError) as caught:
        files.read_bytes(path)
    assert "\n" not in str(caught.value) and time.monotonic() - started < 5


def test_within_gives_up_at_the_deadline():
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        files.within(0.2, lambda: time.sleep(5))
    assert time.monotonic() - started < 2
    assert files.within(1, lambda: 7) == 7


# --- the writer never waits on a FIFO nobody reads (attack-1 H-4) -----------------------


def test_a_fifo_with_no_reader_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(WriteError, match="a FIFO that nothing reads") as caught:
        files.write_atomic(fifo, "verdict\n")
    assert time.monotonic() - started < files.FIFO_READER_WAIT + 3
    assert "\n" not in str(caught.value) and os.path.exists(fifo)


@pytest.mark.parametrize("argv", [
    ["efa-verify", "parse", "{log}", "--instance-type", "p5", "-o", "{out}"],
    ["efakit", "launch", "slurm", "--instance-type", "p5", "--nodes", "2", "--image", "a#b:1",
     "-o", "{out}"],
])
def test_cli_output_to_a_fifo_with_no_reader_is_one_line(tmp_path, argv):
    """attack-1 Q01/Q02: `mkfifo out; ... -o out` hung until killed."""
    import subprocess
    import sys

    log = tmp_path / "x.log"
    log.write_text("host1:1:1 [0] NCCL INFO NCCL version 2.21.5+cuda12.4\n")
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    module = "verify" if argv[0] == "efa-verify" else "buildkit"
    args = [a.format(log=log, out=fifo) for a in argv[1:]]
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "EFAKIT_IMDS": "off",
                               "AWS_EC2_METADATA_DISABLED": "true"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "a FIFO that nothing reads" in proc.stderr
