"""`efa-verify run` creates nothing before its preconditions pass (issue #24, attack-1 D-3).

Here rather than in test_run.py, which needs mpirun: these runs are refused before any
launcher starts, which is exactly what a machine without one shows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests import procs
from tests.conftest import missing


def _bin_with_mpirun(tmp_path: Path) -> str:
    """PATH with python and an `mpirun` that is found but never started: the run stops
    at its readiness check first (hosts a and b do not exist)."""
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "mpirun").write_text("#!/bin/sh\nexit 99\n")
    (stub / "mpirun").chmod(0o755)
    return f"{stub}:{Path(sys.executable).parent}"


@pytest.mark.parametrize("given", ["absent", "empty"])
@pytest.mark.parametrize("args, code", [
    (["--hosts", "localhost"], 4),  # no mpirun on PATH
    (["--hosts", "localhost", "--launcher", "srun"], 4),  # no srun
    (["--hosts", "a:1,b:1", "--ready-timeout", "1", "--with-mpirun"], None),  # never ready
])
def test_a_failed_precondition_creates_nothing_and_the_rerun_says_the_same(
        tmp_path, given, args, code):
    """attack-1 D-3: a run refused for a missing mpirun left --output-dir/logs behind, so
    the identical rerun was refused as 'exists and is not an empty directory'."""
    if Path("/opt/amazon/openmpi/bin/mpirun").exists():
        missing("efa-host", "the EFA installer's mpirun exists on this machine")
    out = tmp_path / "o"
    if given == "empty":
        out.mkdir()
    path = _bin_with_mpirun(tmp_path) if "--with-mpirun" in args else \
        str(Path(sys.executable).parent)
    args = [a for a in args if a != "--with-mpirun"]
    env = {**os.environ, "PATH": path, "EFAKIT_IMDS": "off"}
    runs = [procs.run([sys.executable, "-m", "verify", "run", *args, "--output-dir",
                       str(out)], capture_output=True, text=True, env=env, timeout=120)
            for _ in range(2)]
    first, second = runs
    assert first.returncode != 0 and first.stderr.count("\n") == 1, first.stderr
    if code is not None:
        assert first.returncode == code
    assert (second.returncode, second.stderr) == (first.returncode, first.stderr)
    assert (not out.exists()) if given == "absent" else list(out.iterdir()) == []
