"""`efa-verify sweep`: the isolation logic at scale (simulated fabric) and for real (mpirun).

The simulated fabric is driven by the sweep's own code through the Runner
interface the real runner implements; the real tests run `efa-verify sweep`
over four hosts whose "remote shell" runs here (tests/fixtures/run/fake_rsh.sh),
with the stand-in nccl-tests misbehaving on exactly one of them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES, ROOT
from tests.test_run import leftovers
from verify.boundary.values import HOST_NAME_RE
from verify.cliutil import CliError
from verify.run.outliers import low_outliers
from verify.sweep.cli import check_inputs
from verify.sweep.logic import Sweep, SweepError, Trial, table
from verify.sweep.report import build
from verify.sweep.runner import trial_from
from verify.sweep.sim import Fault, SimulatedFabric, inject, node_names

SCHEMA = json.loads((ROOT / "verify" / "schema" / "sweep.schema.json").read_text())


def sweep(nodes, faults, seed=0, **kwargs):
    result = Sweep(nodes, SimulatedFabric(faults, seed), seed=seed, **kwargs).run()
    jsonschema.validate(json.loads(json.dumps(build(result, "test", "simulate"))), SCHEMA)
    return result


@pytest.mark.parametrize("kind", ["socket", "no_gdr", "slow_nic", "hang"])
def test_one_bad_node_among_4096_is_named_in_two_pair_rounds(kind):
    nodes = node_names(4096)
    bad = nodes[1234]
    result = sweep(nodes, [Fault(kind, (bad,))], seed=7)
    assert result.bad_nodes == [bad] and result.bad_links == [] and result.unknown == []
    assert [r.kind for r in result.rounds] == ["node-checks", "pairs", "pairs"]
    assert result.rounds[1].failed == 1  # the first round already shows it


def test_a_hung_pair_costs_one_timeout_not_the_sweep():
    nodes = node_names(64)
    result = sweep(nodes, [Fault("hang", (nodes[5],))])
    hang_s = SimulatedFabric([]).model["hang_s"]
    assert max(r.elapsed for r in result.rounds) == hang_s
    assert sum(r.elapsed for r in result.rounds) < 3 * hang_s


def test_many_faults_at_once_are_all_found_and_no_one_else():
    nodes = node_names(1024)
    faults = inject(nodes, {"socket": 10, "no_gdr": 10, "slow_nic": 10, "hang": 10, "gpu": 5},
                    seed=3)
    result = sweep(nodes, faults, seed=3)
    assert set(result.bad_nodes) == {f.where[0] for f in faults}
    assert result.bad_links == [] and result.unknown == []
    assert len(result.rounds) - 1 <= 3


def test_a_gpu_fault_is_caught_by_the_node_check_and_never_paired():
    nodes = node_names(8)
    result = sweep(nodes, [Fault("gpu", (nodes[2],))])
    assert result.bad_nodes == [nodes[2]]
    assert not any(nodes[2] in pair for pair in result.trials)
    row = next(r for r in build(result, "t", "simulate")["nodes"] if r["node"] == nodes[2])
    assert row["reason"].startswith("node check fail") and "ECC" in row["evidence"][0]["text"]


def test_a_bad_link_is_named_when_its_pair_runs_and_its_nodes_are_not():
    nodes = node_names(16)
    link = (nodes[3], nodes[9])
    result = sweep(nodes, [Fault("bad_link", link)], coverage=15)  # every pair runs
    assert result.bad_nodes == [] and result.bad_links == [link]
    assert result.confirmed == {link: True}
    doc = build(result, "t", "simulate")
    assert doc["pairs_covered_share"] == 1.0 and doc["verdict"] == "fail"
    assert "Unresponsive receiver" in doc["bad_links"][0]["evidence"][0]["text"]


class Flaky:
    """A runner whose one link fails only on its first run (a flapping link)."""

    def __init__(self, link):
        self.link, self.seen = link, 0

    def node_checks(self, nodes):
        return {n: Trial("pass") for n in nodes}

    def pairs(self, pairs, round_no):
        out = {}
        for pair in pairs:
            failing = pair == self.link and self.seen == 0
            self.seen += pair == self.link
            out[pair] = Trial("fail" if failing else "pass", 400.0,
                              evidence=({"file": "f", "line": 1, "rank": 0, "text": "x"},)
                              if failing else ())
        return out


def test_a_link_that_does_not_fail_again_is_reported_as_intermittent():
    nodes = node_names(8)
    link = ("p5-0001", "p5-0008")
    result = Sweep(nodes, Flaky(link), coverage=7).run()
    assert result.bad_links == [link] and result.confirmed == {link: False}
    row = build(result, "t", "simulate")["bad_links"][0]
    assert row["reason"].endswith("(intermittent)") and row["failed_runs"] == 1


def test_nodes_that_cannot_be_settled_are_unknown_not_guessed():
    nodes = node_names(8)
    faults = [Fault("socket", (n,)) for n in nodes[:6]]
    result = sweep(nodes, faults, max_rounds=1, coverage=1)
    assert result.unknown and not set(result.unknown) & set(result.bad_nodes)
    assert not set(result.bad_nodes) - {f.where[0] for f in faults}
    expected = "fail" if result.bad_nodes else "inconclusive"
    assert build(result, "t", "simulate")["verdict"] == expected


def test_low_outliers_flags_a_slow_pair_and_not_jitter():
    fleet = {i: 437.0 * (1 + (i % 5 - 2) / 100) for i in range(40)}
    assert low_outliers(fleet, 5, 0.8) == []
    assert [o.name for o in low_outliers({**fleet, "slow": 131.0}, 5, 0.8)] == ["slow"]
    assert low_outliers({"a": 400.0, "b": 100.0}, 5, 0.8) == []  # too few to judge


@pytest.mark.parametrize("nodes", [["a"], []])
def test_fewer_than_two_nodes_is_refused(nodes):
    with pytest.raises(SweepError, match="needs at least 2 nodes"):
        Sweep(nodes, SimulatedFabric([]))


def run_result(rank_logs: str, *failed: str) -> dict:
    """An `efa-verify run` result as the real runner wrote it when mpirun failed (status 1).

    Shaped after a node check seen under load: parallel mpiruns raced on Open
    MPI's session directory ("A call to mkdir was unable to create the desired
    directory ... File exists", orte_init failed) and no rank ever started.
    """
    names = ("transport", "errors", "gpus", "efa_devices", "benchmark", "rank_logs")
    status = {n: "fail" if n in failed else "unknown" if n == "transport" else "pass"
              for n in names} | {"rank_logs": rank_logs}
    return {"verdict": "fail", "verdict_reason": "benchmark: mpirun exited with status 1 after "
            "0.2 s", "busbw_peak_GBps": None, "ranks_detail": [], "errors": [],
            "checks": [{"name": n, "status": status[n], "required": True, "evidence": []}
                       for n in names],
            "run": {"interrupted": False, "stages": [
                {"name": "benchmark", "ended": "exited", "returncode": 1, "elapsed_s": 0.2}]}}


@pytest.mark.parametrize("node_check", [True, False])
def test_a_launch_that_failed_before_the_ranks_spoke_accuses_no_node(node_check):
    hosts = ["n4"] if node_check else ["n1", "n4"]
    launch = run_result("unknown", "benchmark")
    assert trial_from(launch, hosts, 1, node_check).status == "unknown"
    # Evidence from the ranks still decides: every rank spoke and the benchmark
    # failed, or a rank that did speak failed a check of its own.
    assert trial_from(run_result("pass", "benchmark"), hosts, 1, node_check).status == "fail"
    spoke = run_result("unknown", "benchmark", "gpus" if node_check else "errors")
    assert trial_from(spoke, hosts, 1, node_check).status == "fail"


def test_a_node_whose_launch_failed_is_paired_again_not_accused():
    class Launches:
        def node_checks(self, nodes):
            return {n: Trial("unknown" if n == "n4" else "pass") for n in nodes}

        def pairs(self, pairs, round_no):
            return {p: Trial("fail" if "n3" in p else "pass", 400.0) for p in pairs}

    result = Sweep(["n1", "n2", "n3", "n4"], Launches()).run()
    assert result.bad_nodes == ["n3"] and result.unknown == []
    assert result.nodes["n4"].passed


def efa_verify(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "verify", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


def test_simulate_prints_json_that_names_the_bad_node():
    done = efa_verify("sweep", "--simulate", "--nodes", "256", "--fault", "slow_nic",
                      "--seed", "4", "--json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SCHEMA)
    truth = doc["simulation"]["faults"][0]["where"]
    assert doc["bad_nodes"] == truth and doc["exclude"]["slurm"] == f"--exclude={truth[0]}"
    assert doc["simulation"]["score"]["false_nodes"] == 0
    assert "sweep: round 1 (pairs): 128 pairs" in done.stderr  # progress on stderr


@pytest.mark.parametrize("args, env, message", [
    (["--simulate", "--nodes", "1"], {}, "sweep: needs at least 2 nodes, got 1"),
    (["--simulate", "--nodes", "8", "--fault", "melted"], {}, "--fault melted: unknown fault "
     "kind 'melted'; known: socket, no_gdr, slow_nic, hang, gpu, bad_link, flapping_link"),
    (["--hosts", "a"], {}, "sweep: needs at least 2 nodes, got 1 (--hosts)"),
    (["--hosts", "a,b", "--instance-type", "p9"], {}, "unknown instance type 'p9'; known: "),
    (["--hosts", "a,b", "--instance-type", ""], {}, "unknown instance type ''; known: "),
    ([], {"SLURM_JOB_NODELIST": "p5-[001-004]", "SLURM_JOB_NUM_NODES": "3"},
     "SLURM_JOB_NODELIST expands to 4 nodes but the job has 3 (SLURM_JOB_NUM_NODES)"),
])
def test_bad_sweep_input_is_a_one_line_usage_error(tmp_path, args, env, message):
    done = efa_verify("sweep", *args, "--output-dir", str(tmp_path / "o"), env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"efa-verify: error: {message}")
    assert done.stderr.count("\n") == 1 and not (tmp_path / "o").exists()


def test_an_empty_provider_is_refused_as_on_run(tmp_path):
    done = efa_verify("sweep", "--hosts", "a,b", "--expect-provider", "",
                      "--output-dir", str(tmp_path / "o"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "'' is not a libfabric provider name" in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("which", ["--policy", "--hostfile"])
def test_simulate_output_may_not_replace_an_input(tmp_path, which):
    """attack-2 D-3/D-4: `sweep --simulate -o pp.yaml --policy pp.yaml` (or --hostfile)
    overwrote the input with the JSON report; parse and static refuse this."""
    given = tmp_path / "in.yaml"
    given.write_text("a slots=1\nb slots=1\n" if which == "--hostfile" else
                     "required: {gpus: false}\n")
    before = given.read_bytes()
    (tmp_path / "lnk").symlink_to(given)
    for out in (given, tmp_path / "lnk"):
        done = efa_verify("sweep", "--simulate", "--nodes", "4", which, str(given), "-o",
                          str(out))
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "an output may not replace an input" in done.stderr
        assert given.read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--nodes", "16385"], "16385"),  # attack-2 SA-11: one more than launch accepts
    (["--nodes", "4", "--gpus-per-host", "99", "--instance-type", "p5"],
     "--gpus-per-host"),  # SA-12: p5 has 8
    (["--nodes", "4", "--gpus-per-host", "9", "--instance-type", "p5"], "has 8 GPUs"),
    (["--nodes", "4", "--hosts", "a,b,$(id)"], "not a host name"),  # SA-13
    (["--nodes", "4", "--hosts", "a,-V"], "not a host name"),
])
def test_simulate_refuses_what_launch_refuses(tmp_path, args, message):
    done = efa_verify("sweep", "--simulate", *args, "-o", str(tmp_path / "r.json"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr and not (tmp_path / "r.json").exists()


def test_simulate_at_the_limits_still_runs(tmp_path):
    done = efa_verify("sweep", "--simulate", "--nodes", "4", "--gpus-per-host", "8",
                      "--instance-type", "p5", "--hosts", "a,b.example,10.0.0.1", "--json")
    assert done.returncode == 0, done.stderr


@settings(max_examples=60, deadline=None)
@given(entries=st.lists(st.text(max_size=12), min_size=1, max_size=4))
def test_every_hosts_entry_is_a_host_name_or_refused(entries):
    """Property: --hosts passes the check only when each entry is a host name (with an
    optional `:slots`); a refusal is one line."""
    value = ",".join(entries)
    fine = all(HOST_NAME_RE.fullmatch(e.strip().partition(":")[0]) or
               _ip(e.strip().partition(":")[0]) for e in value.split(",") if e.strip())
    try:
        check_inputs(None, None, None, value, None, 1)
        accepted = True
    except CliError as exc:
        assert "\n" not in str(exc)
        accepted = False
    if accepted:
        assert fine


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return len(text) <= 253
    except ValueError:
        return False


def real_sweep(tmp_path: Path, bad: str, mode: str, *args: str) -> tuple[int, dict, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "all_reduce_perf").symlink_to(FIXTURES / "run" / "fake_nccl_tests.py")
    policy = tmp_path / "policy.yaml"
    policy.write_text("required: {gpus: false, efa_devices: false}\n")
    env = {"OMPI_MCA_plm_rsh_agent": str(FIXTURES / "run" / "fake_rsh.sh"),
           "TMPDIR": str(tmp_path), "EFAKIT_FAKE_BAD_HOST": bad, "EFAKIT_FAKE_BAD_MODE": mode,
           "EFAKIT_TEST_TOKEN": str(tmp_path)}
    done = efa_verify("sweep", "--hosts", "n1,n2,n3,n4", "--instance-type", "p5",
                      "--tests-dir", str(bindir), "--policy", str(policy), "--output-dir",
                      str(tmp_path / "out"), "--json", *args, env=env, cwd=tmp_path)
    doc = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    if doc:
        jsonschema.validate(doc, SCHEMA)
    return done.returncode, doc, done.stderr


@pytest.mark.mpi
def test_a_real_sweep_names_the_one_host_that_fell_back_to_sockets(tmp_path):
    code, doc, err = real_sweep(tmp_path, "n3", "socket")
    assert code == 1, err
    assert doc["bad_nodes"] == ["n3"] and doc["bad_links"] == [] and doc["unknown_nodes"] == []
    rows = {r["node"]: r for r in doc["nodes"]}
    assert rows["n3"]["transport"] == "socket" and rows["n3"]["gdr"] is False
    assert {rows[n]["status"] for n in ("n1", "n2", "n4")} == {"ok"}
    assert rows["n1"]["transport"] == "libfabric" and rows["n1"]["busbw_GBps"] == 442.19
    cited = rows["n3"]["evidence"][0]
    line = Path(cited["file"]).read_text().splitlines()[cited["line"] - 1]
    assert "via NET/Socket/0" in line and line == cited["text"]
    assert "n3" in cited["pair"] and cited["node"] == "n3"
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["bad_nodes"] == ["n3"]
    assert (tmp_path / "out" / "nodes" / "n3" / "result.json").exists()


@pytest.mark.mpi
def test_a_real_sweep_contains_a_hanging_host_with_the_supervisor(tmp_path):
    start = time.monotonic()
    # 10 s: on a loaded 2-core machine a healthy pair can take 3 s to print its first line
    code, doc, err = real_sweep(tmp_path, "n2", "hang", "--stall-timeout", "10")
    assert code == 1, err
    assert doc["bad_nodes"] == ["n2"] and doc["unknown_nodes"] == []
    assert time.monotonic() - start < 180
    hung = [r for r in doc["rounds"] if r["kind"] == "pairs"]
    assert all(r["failed"] == 1 for r in hung)  # one hung pair per round, the rest passed
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["--hosts", "a,-V"], "--hosts: '-V' is not a host name"),  # would reach ssh as -V
    (["--hosts", "a:²,b"], "slots must be a positive integer"),  # '²'.isdigit() is true
    (["--hosts", "a,b", "--rounds", "1000000000"], "'--rounds': 1e+09 is more than"),
    (["--hosts", "a,b", "--gpus-per-host", "٣"], "'--gpus-per-host'"),
])
def test_values_that_are_not_what_they_look_like_are_refused(tmp_path, args, message):
    done = efa_verify("sweep", *args, "--output-dir", str(tmp_path / "o"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr and not (tmp_path / "o").exists()


def test_a_sweep_where_every_node_check_fails_reports_every_node():
    """Every node bad: no pair can run; the report names them all (was an IndexError)."""
    done = efa_verify("sweep", "--simulate", "--nodes", "3", "--fault", "gpu:3", "--json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["bad_nodes"] == ["p5-0001", "p5-0002", "p5-0003"] and doc["unknown_nodes"] == []


def test_more_coverage_rounds_than_pairs_exist_stop_at_n_minus_one():
    """The circle method meets every pair of N nodes in N-1 rounds; a large --rounds
    is capped there instead of looping (issue #24, class 8)."""
    done = efa_verify("sweep", "--simulate", "--nodes", "6", "--rounds", "16000", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [r["kind"] for r in doc["rounds"]] == ["node-checks"] + ["pairs"] * 5
    assert sum(r["runs"] for r in doc["rounds"][1:]) == 15  # every pair of 6, once


def test_slow_nic_evidence_names_the_value_the_peers_median_and_the_threshold():
    """Issue 27: a bare `# Avg bus bandwidth : 131.00` does not say slow against what.
    The slow node's evidence and reason carry the measured busbw, the median of the
    peers' runs it was compared with, and the threshold from verify/data/sweep.yaml."""
    nodes = node_names(64)
    bad = nodes[17]
    result = sweep(nodes, [Fault("slow_nic", (bad,))], seed=4)
    doc = build(result, "test", "simulate")
    row = next(r for r in doc["nodes"] if r["node"] == bad)
    healthy = SimulatedFabric([]).model["busbw_GBps"]
    min_ratio = table()["bandwidth"]["min_ratio"]
    for evidence in row["evidence"]:
        measured = float(evidence["text"].rsplit(":", 1)[1])  # the run's own line
        median = float(re.search(r"peers' median ([\d.]+) GB/s", evidence["judged"])[1])
        threshold = float(re.search(rf"below {min_ratio:g} x the median \(([\d.]+) GB/s\)",
                                    evidence["judged"])[1])
        assert f"busbw {measured:.2f} GB/s" in evidence["judged"]
        assert abs(median - healthy) / healthy < 0.05
        assert threshold == pytest.approx(min_ratio * median, abs=0.01) and measured < threshold
    assert "peers' median" in row["reason"] and "GB/s" in row["reason"]
    healthy_row = next(r for r in doc["nodes"] if r["status"] == "ok")
    assert not any("judged" in e for e in healthy_row["evidence"])
