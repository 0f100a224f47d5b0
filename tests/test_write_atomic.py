"""`write_atomic` (verify/boundary/files.py), the one writer behind every report path (-o, --junit, --markdown, --out).

Regular files and new paths are replaced atomically with the umask's mode (an
existing file's mode is kept); a symbolic link at the path is refused, live or
dangling, and nothing is written (attack-2 D-1/D-2); devices,
FIFOs and open descriptors are written in place; every failure is one
`WriteError` line and leaves no temp file.  The CLI tests run `python -m verify`
and the efakit entry point with the interpreter running these tests.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import procs
from tests.conftest import QUIET_ENV, ROOT
from tests.parsehelp import parse_text
from tests.test_parse_formats import good, table
from verify import report
from verify.boundary import files
from verify.boundary.files import WriteError, write_atomic

ENV = QUIET_ENV


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring the old one afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _left(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _is_chr(path: str) -> bool:
    return stat.S_ISCHR(os.stat(path, follow_symlinks=False).st_mode)


# --- regular files and new paths: atomic, with a mode that respects the umask ---------

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_umask_mode(tmp_path, umask, mask, mode):
    umask(mask)
    write_atomic(tmp_path / "r.json", "{}\n")
    assert (tmp_path / "r.json").read_text() == "{}\n"
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == mode
    assert _left(tmp_path) == ["r.json"]  # no temp file


def test_an_existing_file_keeps_its_mode_and_is_replaced_whole(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "r.xml"
    target.write_text("old " * 1000)
    target.chmod(0o640)
    before = target.stat().st_ino
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.stat().st_ino != before  # a rename, not a rewrite in place
    assert _left(tmp_path) == ["r.xml"]


def test_text_is_utf8(tmp_path):
    write_atomic(tmp_path / "r.md", "µs ✓\n")
    assert (tmp_path / "r.md").read_bytes() == "µs ✓\n".encode()


@pytest.mark.parametrize("kind", ["live", "dangling", "to-device", "chain"])
def test_a_symlink_at_the_output_is_refused_and_nothing_is_written(tmp_path, kind):
    """attack-2 D-1/D-2: `-o lnk` wrote through the link (lnk -> /etc/passwd replaced
    /etc/passwd as root; a dangling link created its target anywhere).  The writer used
    to follow links on purpose; it now refuses them, so these cases changed."""
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "r.json"
    if kind == "live":
        target.write_text("old")
    link = tmp_path / "link.json"
    if kind == "to-device":
        link.symlink_to("/dev/null")
    elif kind == "chain":
        target.write_text("old")
        (tmp_path / "hop").symlink_to(target)
        link.symlink_to(tmp_path / "hop")
    else:
        link.symlink_to("real/r.json")  # relative, resolved from the link's directory
    with pytest.raises(WriteError) as caught:
        write_atomic(link, "new")
    assert "\n" not in str(caught.value) and "symbolic link" in str(caught.value)
    assert link.is_symlink()
    if kind in ("live", "chain"):
        assert target.read_text() == "old"
    elif kind == "dangling":
        assert not target.exists()
    assert _left(tmp_path / "real") == (["r.json"] if kind in ("live", "chain") else [])


@settings(max_examples=20, deadline=None)
@given(text=st.text(max_size=50), dangling=st.booleans(), depth=st.integers(1, 3))
def test_no_link_at_the_output_is_ever_written_through(tmp_path_factory, text, dangling,
                                                       depth):
    """Property: whatever the text and however many links deep, the file a link leads
    to is as it was (or still absent) and the link is still the link."""
    folder = tmp_path_factory.mktemp("links")
    victim = folder / "victim"
    if not dangling:
        victim.write_text("keep")
    hop = victim
    for i in range(depth):
        link = folder / f"l{i}"
        link.symlink_to(hop)
        hop = link
    with pytest.raises(WriteError):
        write_atomic(hop, text)
    assert (victim.read_text() == "keep") if not dangling else not victim.exists()
    assert all((folder / f"l{i}").is_symlink() for i in range(depth))


def test_cli_launch_to_a_symlink_is_one_line_exit_2(tmp_path):
    """The incident case, aimed at a file in the test's own directory (never /etc)."""
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    (tmp_path / "lnk").symlink_to(victim)
    proc = procs.run([sys.executable, "-m", "buildkit", "launch", "slurm", "--instance-type",
                      "p5", "--nodes", "2", "--image", "a#b:1", "-o", str(tmp_path / "lnk")],
                     capture_output=True, text=True, cwd=ROOT, timeout=120,
                     env={**os.environ, **ENV})
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "symbolic link" in proc.stderr
    assert victim.read_text() == "root:x:0:0\n" and (tmp_path / "lnk").is_symlink()


# --- devices, FIFOs and descriptors: written in place ---------------------------------

def test_dev_null_stays_a_device():
    write_atomic("/dev/null", "discarded\n")
    assert _is_chr("/dev/null")


def test_dev_full_is_a_clear_error_and_stays_a_device():
    with pytest.raises(WriteError) as caught:
        write_atomic("/dev/full", "x" * 10)
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value) == "cannot write /dev/full: No space left on device"
    assert _is_chr("/dev/full")


def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_atomic(fifo, "through the pipe\n")
    reader.join(timeout=10)
    assert got == [b"through the pipe\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert _left(tmp_path) == ["fifo"]


def test_an_open_descriptor_is_written_where_it_points():
    read_end, write_end = os.pipe()
    try:
        write_atomic(f"/dev/fd/{write_end}", "to the pipe\n")
        write_atomic(f"/proc/self/fd/{write_end}", "again\n")
        assert os.read(read_end, 1000) == b"to the pipe\nagain\n"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_dev_stdout_redirected_to_a_file_keeps_the_order(tmp_path):
    """`--junit /dev/stdout > file`: the report lands in the file, not in a replaced copy."""
    script = ("import sys; from verify.boundary.files import write_atomic\n"
              "print('before', flush=True); write_atomic('/dev/stdout', 'REPORT\\n'); "
              "print('after')")
    out = tmp_path / "out.txt"
    with out.open("w") as handle:
        procs.run([sys.executable, "-c", script], stdout=handle, cwd=ROOT, check=True,
                  env={**os.environ, **ENV})
    assert out.read_text() == "before\nREPORT\nafter\n"


# --- failures: one line, nothing left behind ------------------------------------------

def test_a_directory_at_the_path_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(WriteError) as caught:
        write_atomic(tmp_path / "d", "x")
    assert str(caught.value) == f"cannot write {tmp_path / 'd'}: it is a directory"
    assert _left(tmp_path) == ["d"] and _left(tmp_path / "d") == []


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(WriteError) as caught:
        write_atomic(tmp_path / "no" / "such" / "r.json", "x")
    assert str(caught.value).endswith(f"directory {tmp_path / 'no' / 'such'} does not exist")
    assert _left(tmp_path) == []


def test_a_path_under_a_regular_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("keep")
    with pytest.raises(WriteError) as caught:
        write_atomic(tmp_path / "file" / "r.json", "x")
    assert str(caught.value).endswith(f"{tmp_path / 'file'} is not a directory")
    assert (tmp_path / "file").read_text() == "keep" and _left(tmp_path) == ["file"]


@pytest.mark.skipif(not os.path.isdir("/proc/self") or not os.path.isdir("/sys/kernel"),
                    reason="linux: needs Linux's /proc and /sys")
@pytest.mark.parametrize("path", ["/proc/efakit-report.json", "/proc/self/efakit.json",
                                  "/sys/efakit-report.json", "/sys/kernel/efakit.json"])
def test_pseudo_filesystems_are_refused(path):
    with pytest.raises(WriteError) as caught:
        write_atomic(path, "x")
    assert str(caught.value).startswith(f"cannot write {path}: ")
    assert "\n" not in str(caught.value)
    assert not os.path.lexists(path)


def test_a_full_disk_mid_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(WriteError) as caught:
        write_atomic(target, "new")
    assert str(caught.value) == f"cannot write {target}: No space left on device"
    assert target.read_text() == "old" and _left(tmp_path) == ["r.json"]


def test_an_interrupt_mid_write_leaves_no_temp(tmp_path, monkeypatch):
    def interrupted(fd, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "r.json", "new")
    assert _left(tmp_path) == []


def test_write_error_is_an_oserror():
    """Callers that catch OSError (efa-verify's reports) still catch it."""
    assert issubclass(WriteError, OSError)


# --- the CLIs, end to end ---------------------------------------------------------------

def _log(tmp_path: Path) -> Path:
    path = tmp_path / "rank.log"
    path.write_text(good() + good("node-b", 1, 0) + table())
    return path


def _verify(*args, cwd=ROOT, **kw):
    return procs.run([sys.executable, "-m", "verify", *map(str, args)],
                     capture_output=True, text=True, cwd=cwd, timeout=120,
                     env={**os.environ, **ENV}, **kw)


def _efakit(*args):
    return procs.run([sys.executable, "-c", "from buildkit.cli import main; main()",
                      *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                     timeout=120, env={**os.environ, **ENV})


def _one_line_error(proc, prog: str, tail: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"{prog}: error: cannot write ")
    assert proc.stderr.rstrip("\n").endswith(tail), proc.stderr


def test_cli_parse_to_dev_null_leaves_the_device(tmp_path):
    proc = _verify("parse", _log(tmp_path), "--instance-type", "p5", "-o", "/dev/null",
                   "--junit", "/dev/null", "--markdown", "/dev/null")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "VERDICT: PASS" in proc.stdout
    assert _is_chr("/dev/null")


def test_cli_parse_to_dev_full_is_one_line(tmp_path):
    proc = _verify("parse", _log(tmp_path), "--instance-type", "p5", "-o", "/dev/full")
    _one_line_error(proc, "efa-verify", "cannot write /dev/full: No space left on device")
    assert _is_chr("/dev/full")


def test_cli_parse_junit_to_dev_stdout(tmp_path):
    proc = _verify("parse", _log(tmp_path), "--instance-type", "p5", "--junit", "/dev/stdout")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('<?xml version="1.0"')
    assert "</testsuite>\nVERDICT: PASS" in proc.stdout
    assert os.path.islink("/dev/stdout")


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash: not installed")
def test_cli_parse_into_process_substitution(tmp_path):
    got = tmp_path / "got.xml"
    command = (f'"{sys.executable}" -m verify parse "{_log(tmp_path)}" --instance-type p5 '
               f'--junit >(cat > "{got}"); status=$?; wait; exit $status')
    proc = procs.run(["bash", "-c", command], capture_output=True, text=True, cwd=ROOT,
                     timeout=120, env={**os.environ, **ENV})
    assert proc.returncode == 0, proc.stderr
    for _ in range(100):  # cat may still be finishing
        if got.exists() and got.read_text().endswith("</testsuite>\n"):
            break
        time.sleep(0.05)
    assert got.read_text().startswith('<?xml version="1.0"')
    assert got.read_text().endswith("</testsuite>\n")


def test_cli_parse_new_files_respect_the_umask(tmp_path, umask):
    umask(0o022)  # inherited by the child
    proc = _verify("parse", _log(tmp_path), "--instance-type", "p5", "-o", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
    assert sorted(_left(tmp_path)) == ["r.json", "rank.log"]


@pytest.mark.parametrize("where, tail", [
    ("dir", "it is a directory"),
    ("dir/missing/r.json", "does not exist"),
    ("rank.log/r.json", "rank.log is not a directory"),
])
def test_cli_parse_bad_outputs_are_one_line(tmp_path, where, tail):
    (tmp_path / "dir").mkdir()
    proc = _verify("parse", _log(tmp_path), "--instance-type", "p5", "--markdown",
                   tmp_path / where)
    _one_line_error(proc, "efa-verify", tail)
    assert sorted(_left(tmp_path)) == ["dir", "rank.log"] and _left(tmp_path / "dir") == []


def test_efakit_report_markdown_to_dev_full_is_one_line(tmp_path):
    result = tmp_path / "result.json"
    result.write_text(report.to_json(parse_text(tmp_path, good() + good("node-b", 1, 0)
                                                + table(), instance="p5")))
    proc = _efakit("report", result, "--markdown", "/dev/full")
    _one_line_error(proc, "efakit", "cannot write /dev/full: No space left on device")
    ok = _efakit("report", result, "--markdown", "/dev/null")
    assert ok.returncode == 0, ok.stderr
    assert _is_chr("/dev/null") and _is_chr("/dev/full")
