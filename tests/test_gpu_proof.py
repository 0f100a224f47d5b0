"""`make gpu-proof`'s dry run on a CPU machine: the plan a GPU machine would run, within
its 8-minute budget, so the first GPU that becomes available costs one call (issue 27
item 7)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from tests import procs
from tests.conftest import ROOT
from verify.tables import load_table

PROOF = [sys.executable, str(ROOT / "bench" / "gpu_proof.py")]


def dry_run(tmp_path, *args):
    done = procs.run([*PROOF, "--out", str(tmp_path / "proof"), "--dry-run", *args],
                     capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads((tmp_path / "proof" / "plan.json").read_text())


def test_the_plan_fits_the_budget_and_measures_what_run_measures(tmp_path):
    plan = dry_run(tmp_path)
    assert sum(plan["limits_s"].values()) <= plan["budget_s"] <= 8 * 60
    steps = plan["steps"]
    assert steps["preflight"][1:3] == ["preflight", "--json"]
    quick = [str(a) for a in load_table("run")["sweeps"]["quick"]]
    bare = steps["bare"][1:]
    at = quick.index("-g") + 1
    assert bare[:at] + bare[at + 1:] == quick[:at] + quick[at + 1:]  # same sizes, all GPUs
    assert steps["run"][1:4] == ["run", "--hosts", f"localhost:{max(plan['gpus'], 1)}"]
    if plan["nccl_tests"]["from"] is None:
        assert plan["nccl_tests"]["why"].startswith("no nccl-tests here and cannot build it")


def test_an_existing_nccl_tests_build_is_used_as_is(tmp_path):
    tests_dir = tmp_path / "nccl-tests"
    tests_dir.mkdir()
    (tests_dir / "all_reduce_perf").write_text("#!/bin/sh\nexit 0\n")
    plan = dry_run(tmp_path, "--tests-dir", str(tests_dir))
    assert plan["nccl_tests"] == {"from": "existing", "dir": str(tests_dir)}
    assert "build" not in plan["steps"]
    assert plan["steps"]["bare"][0] == str(tests_dir / "all_reduce_perf")
    assert plan["steps"]["run"][plan["steps"]["run"].index("--tests-dir") + 1] == str(tests_dir)


def test_without_a_gpu_the_proof_stops_with_one_line_and_exit_4(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("gpu: a GPU machine runs the proof itself (make gpu-proof)")
    done = procs.run([*PROOF, "--out", str(tmp_path / "proof")], capture_output=True,
                     text=True, timeout=120, env={**os.environ, "PATH": os.defpath})
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == ["gpu-proof: no NVIDIA GPU visible (nvidia-smi)"]
