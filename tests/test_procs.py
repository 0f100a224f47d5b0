"""The tests' process helper reaps whole trees: on a timeout, and at teardown of a test
that failed before it waited (tests/procs.py)."""

import subprocess
import sys
import time

import pytest

from tests import procs

# A child in the group, and a grandchild in a session of its own (as a daemon makes).
TREE = ("import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
        " start_new_session=True)\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n")


def wait_gone(token: str, limit: float = 10) -> list[str]:
    deadline = time.monotonic() + limit
    while (left := procs.carriers(token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_a_timeout_kills_the_group_and_the_detached_grandchild():
    token = f"procs-timeout-{time.monotonic_ns()}"
    with pytest.raises(subprocess.TimeoutExpired):
        procs.run([sys.executable, "-c", TREE], timeout=3, token=token,
                  capture_output=True, text=True)
    assert wait_gone(token) == []


def test_teardown_reaps_what_a_failed_test_left_running():
    token = f"procs-teardown-{time.monotonic_ns()}"
    proc = procs.start([sys.executable, "-c", TREE], token=token, stdout=subprocess.PIPE,
                       text=True)
    assert proc.stdout.readline() == "started\n"
    assert len(procs.carriers(token)) == 3  # the script, its child, its grandchild
    procs.reap_all()  # what the autouse fixture does when a test ends, pass or fail
    assert wait_gone(token) == []
    assert proc.returncode is not None


def test_the_clis_come_from_this_interpreter_not_path(tmp_path):
    env = {"PATH": str(tmp_path), "EFAKIT_IMDS": "off"}  # nothing of ours on PATH
    for argv in (procs.VERIFY, procs.EFAKIT):
        done = procs.run([*argv, "--version"], capture_output=True, text=True, env=env,
                         timeout=120)
        assert done.returncode == 0 and "version" in done.stdout, done.stderr
