"""`efa-verify run`: real `mpirun`, real processes, real signals.

nccl-tests cannot be built here (no CUDA), so each rank is
tests/fixtures/run/fake_nccl_tests.py, which prints what a rank of nccl-tests
prints and acts out one failure per EFAKIT_FAKE_MODE.  Everything around it
is the product: the launcher, the per-rank split of the tagged stream, the
timeouts and the progress watch, killing the tree, the counters stages, the
parser's verdict and the reports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from tests import procs
from tests.conftest import FIXTURES, ROOT, missing
from tests.parsehelp import check

pytestmark = pytest.mark.mpi
FAKE = FIXTURES / "run" / "fake_nccl_tests.py"
SCHEMA = json.loads((ROOT / "verify" / "schema" / "result.schema.json").read_text())


def efa_sysfs(root: Path, devices: tuple[str, ...] = ("rdmap16s27", "rdmap32s27")) -> Path:
    """A sysfs tree laid out as the Linux efa driver lays it out, plus one non-EFA HCA."""
    drivers = root / "bus" / "pci" / "drivers"
    for name, driver in [(d, "efa") for d in devices] + [("mlx5_0", "mlx5_core")]:
        (drivers / driver).mkdir(parents=True, exist_ok=True)
        device = root / "class" / "infiniband" / name
        counters = device / "ports" / "1" / "hw_counters"
        counters.mkdir(parents=True)
        for counter in ("tx_bytes", "rx_bytes", "send_bytes", "recv_bytes", "rdma_read_bytes",
                        "rdma_write_bytes", "unresponsive_remote_events"):
            (counters / counter).write_text("1000\n")
        (counters / "lifespan").write_text("12\n")
        (device / "device").mkdir()
        (device / "device" / "driver").symlink_to(drivers / driver)
    return root


def launch(tmp_path: Path, *args: str, mode: str = "ok", sysfs: Path | None = None,
           bump: bool = False, binary: bool = True) -> subprocess.Popen:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    if binary and not (bindir / "all_reduce_perf").exists():
        (bindir / "all_reduce_perf").symlink_to(FAKE)
    env = {**os.environ, "EFAKIT_FAKE_MODE": mode, "EFAKIT_IMDS": "off",
           "EFAKIT_FAKE_ARGV": str(tmp_path / "argv.txt")}
    if bump and sysfs:
        env["EFAKIT_FAKE_SYSFS"] = str(sysfs)
    # This machine has no GPU, and no EFA unless a sysfs tree is given: the stand-in
    # ranks need neither, so those checks are not required here (they are reported).
    policy = tmp_path / "policy.yaml"
    policy.write_text("required: {gpus: false" + (", efa_devices: false" if sysfs is None
                                                  else "") + "}\n")
    argv = [sys.executable, "-m", "verify", "run", "--hosts", "localhost:2",
            "--tests-dir", str(bindir), "--output-dir", str(tmp_path / "out"),
            "--gpus-per-host", "2", "--policy", str(policy), "--json", *args]
    if sysfs:
        argv += ["--sysfs", str(sysfs)]
    # The verifier, mpirun and the ranks carry the token: leftovers() finds what the
    # product failed to reap, and the test's teardown kills it (tests/procs.py).
    return procs.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=env, cwd=tmp_path, token=str(tmp_path))


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, dict, str]:
    out, err = procs.finish(proc, timeout)
    result = json.loads(out) if out.strip().startswith("{") else {}
    if result:
        jsonschema.validate(result, SCHEMA)
    return proc.returncode, result, err


def leftovers(token: Path) -> list[str]:
    """Processes of this test that the verifier left running."""
    return procs.carriers(token)


def test_healthy_run_passes_and_counters_back_the_logs(tmp_path):
    sysfs = efa_sysfs(tmp_path / "sys")
    code, result, err = finish(launch(tmp_path, "--instance-type", "p5", "--expect-nodes", "2",
                                      sysfs=sysfs, bump=True))
    assert (code, result["verdict"]) == (0, "pass"), result.get("verdict_reason", err)
    assert result["tool"]["command"] == "run"
    assert (result["efa_used"], result["gdr_used"], result["ranks"]) == (True, True, 2)
    assert check(result, "benchmark")["status"] == "pass"
    assert check(result, "gpus")["required"] is False  # reported, not required here
    assert check(result, "efa_devices")["message"].endswith(" 2")  # two EFA devices, one host
    assert check(result, "fabric")["message"] == "one host: no fabric between hosts to check"
    assert check(result, "rank_logs")["message"] == "all 2 ranks wrote a log"
    counters = check(result, "efa_counters")
    assert counters["status"] == "pass" and "2/2 devices moved data" in counters["message"]
    # rank 0 added 1 MiB and rank 1 2 MiB to tx_bytes of each EFA device; mlx5 is not EFA
    host = next(iter(result["run"]["counters"]))
    assert {k: v["traffic_bytes"] for k, v in result["run"]["counters"][host].items()} == \
        {"rdmap16s27/1": 3 * 1_048_576, "rdmap32s27/1": 3 * 1_048_576}
    line = counters["evidence"][0]
    cited = Path(line["file"]).read_text().splitlines()[line["line"] - 1]
    assert json.loads(cited)["delta"]["tx_bytes"] == 3 * 1_048_576
    # the quick sweep from verify/data/run.yaml reached the binary unchanged
    assert (tmp_path / "argv.txt").read_text() == "-b 8M -e 1G -f 2 -g 1 -c 1 -n 5 -w 2"
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "logs").glob("rank.*")) == ["rank.0.log", "rank.1.log"]
    assert json.loads((out / "result.json").read_text())["verdict"] == "pass"
    assert (out / "result.xml").read_text().startswith("<?xml")
    assert "efa_counters" in (out / "result.md").read_text()


def test_logs_that_claim_efa_fail_when_the_counters_did_not_move(tmp_path):
    sysfs = efa_sysfs(tmp_path / "sys")
    code, result, _ = finish(launch(tmp_path, "--instance-type", "p5", sysfs=sysfs))
    assert result["efa_used"] is True  # the logs say so ...
    counters = check(result, "efa_counters")
    assert counters["status"] == "fail" and "moved no data" in counters["message"]
    assert (code, result["verdict"]) == (1, "fail")  # ... the hardware says otherwise


def test_full_sweep_and_other_collectives_pass_their_arguments(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "alltoall_perf").symlink_to(FAKE)
    code, result, _ = finish(launch(tmp_path, "--full", "--test", "alltoall", binary=False))
    assert (tmp_path / "argv.txt").read_text() == "-b 8 -e 8G -f 2 -g 1 -c 1 -n 20 -w 5"
    assert result["run"]["stages"][1]["argv"][-15].endswith("alltoall_perf")


def test_a_hang_is_stopped_killed_and_names_every_silent_rank(tmp_path):
    start = time.monotonic()
    code, result, _ = finish(launch(tmp_path, "--stall-timeout", "3", mode="hang"))
    assert time.monotonic() - start < 60
    assert (code, result["verdict"]) == (1, "fail")
    bench = check(result, "benchmark")
    assert bench["message"].startswith("hang: no rank printed anything for 3 s")
    hangs = [e for e in result["errors"] if e["kind"] == "hang"]
    assert sorted(e["rank"] for e in hangs) == [0, 1]
    assert all("via NET/Libfabric/0/GDRDMA" in e["message"] for e in hangs)
    assert hangs[0]["line"] == 8 and hangs[0]["file"].endswith("rank.0.log")
    assert result["run"]["stages"][1]["ended"] == "stalled"
    assert leftovers(tmp_path) == []


def test_a_rank_that_stops_printing_is_named_and_the_live_one_is_not(tmp_path):
    code, result, _ = finish(launch(tmp_path, "--timeout", "9", mode="rank-stops"))
    assert (code, result["verdict"]) == (1, "fail")
    assert result["run"]["stages"][1]["ended"] == "timeout"
    hangs = [e for e in result["errors"] if e["kind"] == "hang"]
    assert [e["rank"] for e in hangs] == [1]
    assert hangs[0]["line"] == 3 and "Using Libfabric version 2.1" in hangs[0]["message"]
    assert leftovers(tmp_path) == []


def test_sigterm_ignoring_ranks_and_detached_children_are_killed(tmp_path):
    code, result, _ = finish(launch(tmp_path, "--stall-timeout", "2", mode="ignore-term"))
    assert (code, result["run"]["stages"][1]["ended"]) == (1, "stalled")
    assert leftovers(tmp_path) == []


def test_a_rank_that_exits_non_zero_fails_with_its_error_line(tmp_path):
    code, result, _ = finish(launch(tmp_path, mode="exit"))
    assert (code, result["verdict"]) == (1, "fail")
    assert "exited with status" in check(result, "benchmark")["message"]
    errors = [e for e in result["errors"] if "Unresponsive receiver" in e["message"]]
    assert errors and errors[0]["rank"] == 1 and errors[0]["file"].endswith("rank.1.log")


def test_a_missing_rank_log_is_inconclusive_not_a_pass(tmp_path):
    code, result, _ = finish(launch(tmp_path, mode="missing"))
    assert check(result, "rank_logs")["status"] == "unknown"
    assert "ranks 1" in check(result, "rank_logs")["message"]
    assert (code, result["verdict"]) == (3, "inconclusive")


def test_sigterm_to_the_verifier_still_writes_the_report(tmp_path):
    proc = launch(tmp_path, mode="hang")
    logs = tmp_path / "out" / "logs"
    deadline = time.monotonic() + 60
    while not (logs / "rank.1.log").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    code, result, _ = finish(proc)
    assert code == 130
    assert result["run"]["interrupted"] is True
    assert check(result, "benchmark")["status"] == "unknown"
    assert json.loads((tmp_path / "out" / "result.json").read_text())["run"]["interrupted"]
    assert leftovers(tmp_path) == []


def test_missing_nccl_tests_is_a_failed_check_naming_it(tmp_path):
    code, result, _ = finish(launch(tmp_path, binary=False))
    assert (code, result["verdict"]) == (1, "fail")
    assert result["verdict_reason"].startswith("benchmark: all_reduce_perf not found")


@pytest.mark.parametrize("args, message", [
    (["--hosts", "a,,b:x"], "--hosts: 'b:x': slots must be a positive integer (1 to 256)"),
    (["--hosts", "a,a"], "--hosts: host a is listed twice"),
    (["--hostfile", "/nonexistent"], "--hostfile /nonexistent: No such file or directory"),
    (["--hosts", "a", "--hostfile", "f"], "give --hosts or --hostfile, not both"),
])
def test_bad_host_lists_are_one_line_usage_errors(tmp_path, args, message):
    done = procs.run([sys.executable, "-m", "verify", "run", *args, "--output-dir",
                      str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr == f"efa-verify: error: {message}\n"
    assert not (tmp_path / "o").exists()


def test_a_used_output_directory_is_refused(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "result.json").write_text("{}")
    done = procs.run([sys.executable, "-m", "verify", "run", "--output-dir",
                      str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode == 2
    assert "exists and is not an empty directory" in done.stderr


def test_no_mpirun_is_a_missing_tool(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = procs.run([sys.executable, "-m", "verify", "run", "--hosts", "localhost",
                      "--output-dir", str(tmp_path / "o")], capture_output=True,
                     text=True, env=env)
    if Path("/opt/amazon/openmpi/bin/mpirun").exists():
        missing("efa-host", "the EFA installer's mpirun exists on this machine")
    assert done.returncode == 4
    assert done.stderr.startswith("efa-verify: error: mpirun not found")


@pytest.mark.gpu
def test_torch_engine_on_a_real_gpu(tmp_path):
    """On a GPU host: one rank through torch.distributed and NCCL, the table parsed."""
    proc = procs.run([sys.executable, "-m", "verify", "run", "--engine", "torch",
                      "--hosts", "localhost", "--gpus-per-host", "1", "--json",
                      "--output-dir", str(tmp_path / "out")], capture_output=True,
                     text=True, timeout=600, env={**os.environ, "EFAKIT_IMDS": "off"})
    result = json.loads(proc.stdout)
    assert check(result, "benchmark")["status"] == "pass", check(result, "benchmark")
    assert result["tests"] and result["tests"][-1]["complete"]
    assert result["nccl_version"]  # NCCL's own INFO lines reached the rank log
    assert check(result, "bandwidth")["status"] == "unknown"  # one rank: busbw says nothing
