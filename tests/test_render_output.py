"""`efakit render -o`: a user's directory is never wiped, bad targets are one line, exit 2."""

import os
import sys

import pytest

from tests import procs
from tests.conftest import ROOT


def render(out, cwd=ROOT):
    return procs.run([sys.executable, "-m", "buildkit.cli", "render", "pytorch",
                      "--variant", "ec2", "-o", str(out)], capture_output=True, text=True,
                     cwd=cwd, env={**os.environ, "EFAKIT_IMDS": "off"}, timeout=120)


def _one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    for fragment in fragments:
        assert fragment in line


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else None)
                  for p in root.rglob("*"))


def test_a_users_directory_is_refused_and_left_alone(tmp_path):
    user = tmp_path / "userdata"
    (user / "sub").mkdir(parents=True)
    (user / "notes.txt").write_text("keep me\n")
    before = _snapshot(tmp_path)
    _one_line_error(render(user), "refusing to replace", "not an earlier efakit render")
    assert _snapshot(tmp_path) == before


def test_dot_is_refused_when_it_holds_the_users_files(tmp_path):
    (tmp_path / "work.py").write_text("print('mine')\n")
    before = _snapshot(tmp_path)
    env_root = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = procs.run([sys.executable, "-m", "buildkit.cli", "render", "pytorch",
                      "--variant", "ec2", "-o", "."], capture_output=True, text=True,
                     cwd=tmp_path, env=env_root, timeout=120)
    _one_line_error(proc, "refusing to replace .")
    assert _snapshot(tmp_path) == before


def test_an_earlier_render_is_replaced_whole(tmp_path):
    out = tmp_path / "ctx"
    assert render(out).returncode == 0
    (out / "stale-file").write_text("from an older render\n")
    assert render(out).returncode == 0
    assert not (out / "stale-file").exists() and (out / "Dockerfile").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctx"]  # no temporaries left


@pytest.mark.parametrize("target,fragment", [
    ("afile/sub", "is not a directory"),
    ("afile", "exists and is not a directory"),
    ("/proc/efakit-x", "cannot write the build context to /proc/efakit-x"),
    ("/sys/kernel/efakit-x", "cannot write the build context to /sys/kernel/efakit-x"),
])
def test_unwritable_targets_are_one_line(tmp_path, target, fragment):
    (tmp_path / "afile").write_text("keep\n")
    out = target if target.startswith("/") else tmp_path / target
    _one_line_error(render(out), fragment)
    assert (tmp_path / "afile").read_text() == "keep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
