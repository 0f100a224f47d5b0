"""`.ci/setup-host`, the set-up shared by `make ci-image` and `.ci/run`: its refusals.

Where it may not install (EFAKIT_NO_SYSTEM_INSTALL=1, not root, no apt-get) it
must stop in the first seconds, before anything is downloaded or started, and
print the exact commands.  These tests run it on a PATH of a few tools in a tmp
dir (no dockerd, debootstrap or apt-get on it) against an engine address that
does not exist, so nothing on the machine is installed, started or stopped.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests import procs
from tests.conftest import ROOT

SCRIPT = ROOT / ".ci" / "setup-host"
TOOLS = ("bash", "env", "id", "cat", "mkdir", "seq", "sleep")  # what the script itself calls


def _path_without_system_tools(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        os.symlink(shutil.which(tool), bin_dir / tool)
    return str(bin_dir)


def _run(tmp_path, extra_env, argv=()):
    env = {"PATH": _path_without_system_tools(tmp_path), "OUT": str(tmp_path / "out"),
           "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", **extra_env}
    start = time.monotonic()
    proc = procs.run(["bash", str(SCRIPT), *argv], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    return proc, time.monotonic() - start


def _assert_refused(proc, seconds, tmp_path, why):
    assert proc.returncode == 4, proc.stderr
    assert seconds < 15
    assert f"nothing was installed ({why})" in proc.stderr
    assert "apt-get install -y --no-install-recommends docker.io debootstrap" in proc.stderr
    assert "dockerd >" in proc.stderr  # how to start the engine in the background
    assert "+ " not in proc.stderr  # no system command was run
    assert not (tmp_path / "out").exists()


def test_no_system_install_prints_the_commands_and_runs_none(tmp_path):
    proc, seconds = _run(tmp_path, {"EFAKIT_NO_SYSTEM_INSTALL": "1"})
    _assert_refused(proc, seconds, tmp_path, "EFAKIT_NO_SYSTEM_INSTALL=1")


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as root to test the apt-get check")
def test_without_apt_get_it_prints_the_commands(tmp_path):
    proc, seconds = _run(tmp_path, {})
    _assert_refused(proc, seconds, tmp_path, "no apt-get (not Debian or Ubuntu)")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop to an unprivileged user")
def test_not_root_prints_the_commands_with_sudo():
    # pytest's tmp dirs are private to root: the unprivileged user gets a dir of its own.
    with tempfile.TemporaryDirectory(prefix="efakit-test-setup-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        script = work / "setup-host"
        shutil.copy(SCRIPT, script)
        script.chmod(0o755)
        env = {"PATH": _path_without_system_tools(work), "OUT": str(work / "out"),
               "DOCKER_HOST": f"unix://{work}/no-engine.sock"}
        proc = procs.run([shutil.which("setpriv"), "--reuid=65534", "--regid=65534",
                               "--clear-groups", shutil.which("bash"), str(script)],
                              env=env, capture_output=True, text=True, timeout=60, cwd=work)
        assert proc.returncode == 4, proc.stderr
        assert "nothing was installed (not root)" in proc.stderr
        assert "sudo apt-get install -y --no-install-recommends docker.io debootstrap" \
            in proc.stderr
        assert "sudo make ci-image" in proc.stderr  # debootstrap of the base needs root
        assert not (work / "out").exists()


def test_make_ci_image_stops_before_downloading(tmp_path):
    """The README's first command: the host check runs before the venv, mirror or base."""
    env = {**os.environ, "EFAKIT_NO_SYSTEM_INSTALL": "1",
           "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    start = time.monotonic()
    proc = procs.run(["make", "-C", str(ROOT), "ci-image", f"OUT={tmp_path}/out",
                           f"MIRROR={tmp_path}/mirror"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert time.monotonic() - start < 15
    assert "nothing was installed (EFAKIT_NO_SYSTEM_INSTALL=1)" in proc.stderr
    assert "dockerd >" in proc.stderr
    assert not (tmp_path / "mirror").exists() and not (tmp_path / "out").exists()


def test_report_says_nothing_was_left_running_without_a_pid(tmp_path):
    proc = procs.run(["bash", str(SCRIPT), "--report", str(tmp_path / "dockerd.pid")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert "nothing left running by make ci-image" in proc.stderr
