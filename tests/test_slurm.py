"""A real Slurm: `efakit launch slurm` output submitted with sbatch, the sweep across its nodes.

Debian's slurmctld, slurmd and munge run in containers of the offline image
(tests/services.py: slurm_cluster).  The bare-metal script (`--container
none`: the image is the node) is submitted for real; the sweep inside it starts
every node check and pair as an srun step with --mpi=pmix (Debian's mpi_pmix
plugin, libpmix from libpmix-dev) across n1-n3, no ssh, whose ranks are the
stand-in nccl-tests of tests/fixtures/run.  On n2 the stand-in falls back to sockets: n2, and only
n2, must be named.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import FIXTURES
from tests.services import DOCKER, slurm_cluster

pytestmark = pytest.mark.docker


def test_sbatch_of_the_generated_script_names_the_one_bad_node(ci_images, tmp_path):
    shared = tmp_path / "fsx"
    (shared / "out").mkdir(parents=True)
    (shared / "fake").mkdir()
    shutil.copy(FIXTURES / "run" / "fake_nccl_tests.py", shared / "fake" / "all_reduce_perf")
    (shared / "fake" / "all_reduce_perf").chmod(0o755)
    (shared / "policy.yaml").write_text("required: {gpus: false, efa_devices: false}\n")
    script = subprocess.run(
        [sys.executable, "-m", "buildkit.cli", "launch", "slurm", "--instance-type", "p5",
         "--nodes", "3", "--gpus-per-node", "1", "--container", "none", "--output-dir",
         "/fsx/out", "--time", "10:00", "--arg", "--tests-dir", "--arg", "/fake-bin",
         "--arg", "--policy", "--arg", "/fsx/policy.yaml"],
        capture_output=True, text=True, check=True).stdout
    script = script.replace("/fake-bin", "/fsx/fake")
    # The test nodes have no GPU for Slurm to hand out: the one edit to the script.
    assert "\n#SBATCH --gpus-per-node=1\n" in script
    script = re.sub(r"^#SBATCH --gpus-per-node=1\n", "", script, flags=re.M)
    (shared / "job.sbatch").write_text(script)
    shared.chmod(0o777)
    with slurm_cluster(shared) as ctl:
        start = time.monotonic()
        done = subprocess.run([DOCKER, "exec", "-e", "EFAKIT_FAKE_BAD_HOST=n2", ctl,
                               "sbatch", "--wait", "--parsable", "/fsx/job.sbatch"],
                              capture_output=True, text=True, timeout=600)
        wall = time.monotonic() - start
    job = re.search(r"\d+", done.stdout).group(0)
    output = (shared / "out" / f"slurm-{job}.out").read_text()
    report = json.loads((shared / "out" / f"efa-verify-sweep-{job}" / "sweep.json").read_text())
    print(f"sbatch --wait: {wall:.1f} s\n{script}\n{output}")  # the transcript, with -s
    assert done.returncode == 1, done.stderr + output  # the sweep's exit: a node is bad
    assert report["hosts_source"] == "slurm (SLURM_JOB_NODELIST)"
    assert report["bad_nodes"] == ["n2"] and report["bad_links"] == []
    assert report["unknown_nodes"] == []
    assert report["exclude"]["slurm"] == "--exclude=n2"
    rows = {r["node"]: r for r in report["nodes"]}
    assert rows["n2"]["transport"] == "socket"
    assert {rows[n]["status"] for n in ("n1", "n3")} == {"ok"}
    assert "BAD NODE n2" in output and "via NET/Socket/0" in output
    # Every run was srun steps (PMIx), never mpirun over ssh: the image has no key.
    runs = [json.loads(r.read_text()) for r in
            (shared / "out" / f"efa-verify-sweep-{job}").glob("*/*/result.json")]
    assert runs and {r["run"]["launcher"] for r in runs} == {"srun"}
    stages = [s for r in runs for s in r["run"]["stages"]]
    assert all(s["argv"][0].endswith("srun") and "--mpi=pmix" in s["argv"] for s in stages)
    ranks = sum(r["run"]["ranks_launched"] for r in runs)
    first = min(s["elapsed_s"] for r in runs for s in r["run"]["stages"]
                if s["name"] == "counters-before")
    print(f"srun: {len(runs)} runs, {ranks} benchmark ranks started, fastest first step "
          f"{first:.2f} s, sbatch --wait {wall:.1f} s")
