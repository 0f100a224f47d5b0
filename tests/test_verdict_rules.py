"""Verdict rules the shared corpus shows only in passing, with logs written here
(line shapes of corpus 018: aws-ofi-nccl 1.16.2, NCCL 2.27.3), so a GitHub runner
without ../shared runs them too."""

import os
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import procs
from tests.conftest import CORPUS, ROOT
from tests.parsehelp import check, parse_paths, parse_text
from tests.procs import VERIFY

ONE_NODE = """\
node-a:188:585 [0] NCCL INFO NCCL version 2.27.3+cuda12.9
node-a:188:585 [0] NCCL INFO NET/OFI Initializing aws-ofi-nccl 1.16.2
node-a:188:585 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa (found 1 nics)
node-a:188:585 [0] NCCL INFO Using network Libfabric
node-a:188:585 [0] NCCL INFO comm 0x556d504b7460 rank 0 nRanks 2 nNodes 1 localRanks 2 localRank 0 MNNVL 0
node-a:188:709 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM
node-a:188:709 [0] NCCL INFO Channel 01/0 : 0[0] -> 1[1] via P2P/CUMEM
"""


def test_one_node_on_the_efa_provider_that_moved_nothing_over_it_did_not_use_efa(tmp_path):
    """Field notes: a single-node run can select the efa provider yet move everything over
    SHM/P2P; the provider line is no proof of traffic."""
    result = parse_text(tmp_path, ONE_NODE, instance="p5")
    assert (result["transport"], result["provider"]) == ("libfabric", "efa")
    efa = check(result, "efa_used")
    assert efa["status"] == "fail" and result["efa_used"] is False
    assert "every connection stayed on SHM/P2P inside one node" in efa["message"]
    assert [e["line"] for e in efa["evidence"]][:2] == [6, 7]
    assert result["verdict"] == "fail"


def test_one_node_forced_onto_the_network_did_use_efa(tmp_path):
    """Traffic between GPUs of one node that was forced onto the network went over EFA."""
    forced = ONE_NODE.replace("via P2P/CUMEM", "[send] via NET/Libfabric/0/GDRDMA")
    result = parse_text(tmp_path, forced, instance="p5")
    assert result["efa_used"] is True and result["gdr_used"] is True


def test_an_explicit_no_gdr_line_fails_gdr_without_any_channel_line(tmp_path):
    """The plugin says GDR is off before NCCL prints any channel: that is a no, not an
    unknown (field notes: explicit 'no GDR' statements)."""
    head = "".join(ONE_NODE.splitlines(keepends=True)[:4])
    off = ("node-a:188:585 [0] NCCL INFO NET/OFI Need to force simple protocol: "
           "GDR not supported\n")
    result = parse_text(tmp_path, head + off, instance="p5")
    gdr = check(result, "gdr_used")
    assert result["gdr_used"] is False and gdr["status"] == "fail"
    assert "a line says GPUDirect RDMA is off" in gdr["message"]
    assert gdr["evidence"][0]["line"] == 5
    assert parse_text(tmp_path, head, name="plain.log", instance="p5")["gdr_used"] is None


FALLBACK = """\
node-a:944:944 [0] NCCL INFO NCCL version 2.27.3+cuda12.9
node-a:944:944 [0] NCCL INFO NET/Plugin : No plugin found (libnccl-net.so), using internal implementation
node-a:944:944 [0] NCCL INFO NET/IB : No device found.
node-a:944:944 [0] NCCL INFO NET/Socket : Using [0]eth0:10.67.132.117<0>
"""


def test_a_socket_fallback_without_channel_lines_has_no_gdr(tmp_path):
    """No plugin, no IB device, sockets: the job's transport is socket before any channel
    line, and sockets have no GPUDirect RDMA (a no, not an unknown)."""
    result = parse_text(tmp_path, FALLBACK, instance="p5")
    assert result["transport"] == "socket" and result["efa_used"] is False
    gdr = check(result, "gdr_used")
    assert result["gdr_used"] is False and "Socket transport has no GPUDirect RDMA" in \
        gdr["message"]


def test_one_rank_on_tcp_is_not_hidden_by_the_others_on_efa(tmp_path):
    """When ranks disagree on the provider, the job's provider is the one that fails it."""
    efa_rank = ONE_NODE.replace("nNodes 1", "nNodes 2").replace(
        "0[0] -> 1[1] via P2P/CUMEM", "1[0] -> 0[0] [receive] via NET/Libfabric/0/GDRDMA")
    tcp_rank = efa_rank.replace("node-a", "node-b").replace("rank 0 nRanks", "rank 1 nRanks") \
        .replace("provider is efa, fabric is efa", "provider is tcp;ofi_rxm, fabric is 10.0.0.0/24")
    result = parse_text(tmp_path, efa_rank + tcp_rank, instance="p5")
    assert result["provider"] == "tcp;ofi_rxm"
    provider = check(result, "provider")
    assert provider["status"] == "fail" and provider["evidence"][0]["text"].startswith("node-b")
    assert result["efa_used"] is False


def test_an_instance_without_gpudirect_is_not_failed_for_lacking_it(tmp_path):
    """g4dn has EFA but no GPUDirect RDMA: the GDR check is skipped with the reason, and
    the same log on p5 (which has it) fails."""
    no_gdr = ONE_NODE.replace("nNodes 1", "nNodes 2").replace(
        "0[0] -> 1[1] via P2P/CUMEM", "1[0] -> 0[0] [receive] via NET/Libfabric/0")
    result = parse_text(tmp_path, no_gdr, instance="g4dn.metal")
    gdr = check(result, "gdr_used")
    assert gdr["status"] == "skip" and "g4dn.metal has no GPUDirect RDMA: no" in gdr["message"]
    assert result["gdr_used"] is False and result["efa_used"] is True
    assert check(parse_text(tmp_path, no_gdr, name="p5.log", instance="p5"),
                 "gdr_used")["status"] == "fail"


def test_an_error_line_fails_an_otherwise_healthy_job(tmp_path):
    from tests.test_parse_formats import good, table

    warn = ("node-b:188:585 [0] NCCL WARN NET/OFI Request 0x7f456c222f60 completed with "
            "error. RC: 112. Error: Unresponsive receiver\n")
    healthy = good() + good("node-b", 1, 0) + table()
    assert check(parse_text(tmp_path, healthy, instance="p5"), "errors")["status"] == "pass"
    result = parse_text(tmp_path, healthy + warn, name="warn.log", instance="p5")
    errors = check(result, "errors")
    assert errors["status"] == "fail" and errors["message"].startswith(
        "1 error line(s); first: [network_unreachable] NET/OFI Request")
    assert "Unresponsive receiver" in errors["evidence"][0]["text"]
    assert result["verdict"] == "fail" and result["verdict_reason"].startswith("errors")


# -- issue 27: every table that can be judged is judged --------------------------------
SLOW_P4D = ROOT / "tests" / "fixtures" / "logs" / "p4d-2node-socket-speed-no-transport-lines.log"


def _verify(*args: str) -> tuple[int, dict, str]:
    """efa-verify parse as a user runs it: exit code, the JSON result, stderr."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        done = procs.run([*VERIFY, "parse", *args, "-o", str(out)], capture_output=True,
                         text=True, env={**os.environ, "EFAKIT_IMDS": "off"})
        return done.returncode, json.loads(out.read_text()) if out.exists() else {}, \
            done.stderr


def test_a_socket_speed_p4d_table_fails_on_bandwidth_without_transport_lines():
    """Issue 27: 16 ranks in nccl-tests' device list, busbw peak 1.2 GB/s, no NCCL line at
    all: the ranks come from the device list (algbw never reaches 1 GB/s), and the table
    fails on the derived floor.  It was INCONCLUSIVE, exit 3."""
    code, result, err = _verify(str(SLOW_P4D), "--instance-type", "p4d", "--expect-nodes", "2")
    assert (code, result["verdict"]) == (1, "fail"), err
    derived = check(result, "bandwidth_derived")
    assert derived["status"] == "fail" and "all_reduce on 16 ranks, 2 nodes: 1.2 GB/s at " \
        "1 GiB against a derived floor of 19.9" in derived["message"]
    assert "TCP socket speed, not EFA" in derived["message"]  # what on-call reads first
    assert result["verdict_reason"].startswith("bandwidth_derived")
    assert derived["evidence"][0]["line"] >= 25  # a table row, cited


def test_a_slow_table_that_stops_below_the_judged_sizes_still_fails(tmp_path):
    """No row reaches 64 MiB, but every row from 1 MiB up is under a quarter of the floor."""
    lines = SLOW_P4D.read_text().splitlines(keepends=True)
    short = "".join(line for line in lines if not line[:12].strip().isdigit()
                    or int(line[:12]) < 1 << 25)
    result = parse_text(tmp_path, short, instance="p4d", expect_nodes=2)
    derived = check(result, "bandwidth_derived")
    assert derived["status"] == "fail" and "every row from 4 MiB up" in derived["message"]
    healthy = short.replace("    0.59    1.10", "    5.00    9.38")  # one healthy 4 MiB row
    assert healthy != short
    assert check(parse_text(tmp_path, healthy, name="h.log", instance="p4d", expect_nodes=2),
                 "bandwidth_derived")["status"] == "unknown"


def test_a_table_whose_ratio_cannot_be_read_is_judged_by_the_lower_floor(tmp_path):
    """algbw 0.00 everywhere: all_reduce or reduce_scatter (redop sum), 16 ranks from the
    device list, judged by the lower of the two floors."""
    text = SLOW_P4D.read_text()
    flat = re.sub(r"(\s-1\s+[\d.]+)\s+[\d.]+\s+[\d.]+(\s+0\s+[\d.]+)\s+[\d.]+\s+[\d.]+",
                  r"\1    0.00    0.01\2    0.00    0.01", text)
    result = parse_text(tmp_path, flat, instance="p4d", expect_nodes=2)
    derived = check(result, "bandwidth_derived")
    assert derived["status"] == "fail"
    assert "all_reduce or reduce_scatter on 16 ranks" in derived["message"]


def test_a_p5_table_with_expect_nodes_is_judged():
    """Corpus 048 is a table alone: --expect-nodes gives the nodes, busbw/algbw the ranks."""
    result = parse_paths([CORPUS / "048-p5-eks-nccltests-table-avg-busbw-no-net-lines.log"],
                         instance="p5", expect_nodes=2)
    for name in ("bandwidth", "bandwidth_derived"):
        assert check(result, name)["status"] == "pass", check(result, name)
        assert "all_reduce on 16 ranks, 2 nodes" in check(result, name)["message"]


def test_a_broadcast_table_is_judged_as_broadcast(tmp_path):
    """nccl-tests' broadcast prints redop none and root 0, busbw = algbw."""
    table = re.sub(r"float     sum      -1(\s+[\d.]+)\s+([\d.]+)\s+[\d.]+(\s+0\s+[\d.]+)"
                   r"\s+([\d.]+)\s+[\d.]+",
                   lambda m: f"float    none       0{m[1]}  {m[2]:>6}  {m[2]:>6}{m[3]}  "
                   f"{m[4]:>6}  {m[4]:>6}", SLOW_P4D.read_text())
    assert " none       0" in table
    derived = check(parse_text(tmp_path, table, instance="p4d", expect_nodes=2),
                    "bandwidth_derived")
    assert derived["status"] == "fail" and "broadcast on 16 ranks" in derived["message"]


@pytest.mark.parametrize("figure", ["inf", "nan", "1e308", "-3.5"])
def test_impossible_figures_are_an_error_at_their_line(figure):
    """A table edited or corrupted to inf, nan or a figure above the instance's links is
    an error citing file and line; the run is never a PASS and never a traceback."""
    text = (CORPUS / "001-efa-gdr-p4d-nccl283-eks-nccltests.log").read_text()
    lines = text.splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if "   17.52   32.84  5e-07" in line)
    lines[number - 1] = lines[number - 1].replace("   32.84  5e-07", f"   {figure}  5e-07")
    with_bad = Path(tempfile.mkdtemp()) / "edited.log"
    with_bad.write_text("".join(lines))
    code, result, err = _verify(str(with_bad), "--instance-type", "p4d", "--expect-nodes", "2")
    assert code == 1 and "Traceback" not in err and result["verdict"] == "fail"
    bad = [e for e in result["errors"] if e["kind"] == "impossible_figure"]
    assert [(Path(e["file"]).name, e["line"]) for e in bad] == [("edited.log", number)]
    assert figure.lstrip("-") in bad[0]["message"].replace("1e+308", "1e308")
    assert result["busbw_peak_GBps"] < 40  # the figure is out of the table


def test_a_figure_above_the_instance_ceiling_is_impossible_but_a_fast_one_is_not(tmp_path):
    """p5's published 2-node figure (487 GB/s at 16 GiB) is above its EFA line rate
    (400 GB/s) yet possible; twice the line rate and a margin over is not."""
    from verify.bandwidth import ceiling
    from verify.profiles import resolve

    p5 = resolve("p5")
    assert 487 < ceiling(p5) < 10_000
    text = (CORPUS / "048-p5-eks-nccltests-table-avg-busbw-no-net-lines.log").read_text()
    fast = text.replace("437.79", "487.00")
    assert not [e for e in parse_text(tmp_path, fast, instance="p5")["errors"]
                if e["kind"] == "impossible_figure"]
    over = text.replace("437.79", f"{ceiling(p5) + 1:.2f}")
    assert [e["line"] for e in parse_text(tmp_path, over, name="o.log", instance="p5")["errors"]
            if e["kind"] == "impossible_figure"] == [11]


# -- properties ------------------------------------------------------------------------
def _ranks_log(n: int, bad: int, transport: str) -> str:
    """n ranks on n nodes (one GPU each), rank `bad` connected over `transport`."""
    out = []
    for rank in range(n):
        host = f"node-{rank}"
        net = transport if rank == bad else "Libfabric/0/GDRDMA"
        out += [f"{host}:10:10 [0] NCCL INFO NCCL version 2.27.3+cuda12.9",
                f"{host}:10:10 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa "
                "(found 4 nics)",
                f"{host}:10:10 [0] NCCL INFO comm 0x55 rank {rank} nRanks {n} nNodes {n} "
                "localRanks 1 localRank 0 MNNVL 0",
                f"{host}:10:20 [0] NCCL INFO Channel 00/0 : {(rank - 1) % n}[0] -> {rank}[0] "
                f"[receive] via NET/{net}",
                f"{host}:10:20 [0] NCCL INFO Channel 00/0 : {rank}[0] -> {(rank + 1) % n}[0] "
                f"[send] via NET/{net}"]
    return "\n".join(out) + "\n"


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(2, 24).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_one_socket_rank_among_n_always_fails_the_parse(tmp_path, shape):
    n, bad = shape
    result = parse_text(tmp_path, _ranks_log(n, bad, "Socket/0"), instance="p4d")
    assert result["verdict"] == "fail" and result["transport"] == "socket"
    assert result["efa_used"] is False
    assert parse_text(tmp_path, _ranks_log(n, bad, "Libfabric/0/GDRDMA"), name="ok.log",
                      instance="p4d")["transport"] == "libfabric"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["pass", "unknown", "skip", "fail"]), min_size=1, max_size=8),
       st.data())
def test_a_failing_check_wins_over_any_unknown(statuses, data):
    """FAIL when any required check fails, whatever else is unknown, in any order."""
    from verify.checks import Check, decide
    from verify.policy import load_policy

    where = data.draw(st.integers(0, len(statuses)))
    statuses = statuses[:where] + ["fail"] + statuses[where:]
    checks = [Check(name, status, True, status) for name, status in
              zip(["transport", "provider", "efa_used", "gdr_used", "nccl_tests", "bandwidth",
                   "bandwidth_derived", "errors", "nodes"], statuses, strict=False)]
    word, reason = decide(load_policy(None), checks)
    assert word == "fail" and reason.endswith(": fail")


# -- root cause first (issue 27 item 3) --------------------------------------------------
NO_DRIVER = """\
# nThread 1 nGpus 1 minBytes 8388608 maxBytes 1073741824 step: 2(factor) warmup iters: 2 iters: 5 agg iters: 1 validation: 1 graph: 0
#
c0ffee: Test CUDA failure common.cu:1180 'CUDA driver version is insufficient for CUDA runtime version'
 .. c0ffee pid 52: Test failure common.cu:1454
"""


def test_a_missing_driver_heads_the_verdict_not_the_errors_it_causes(tmp_path):
    """Issue 27: `efa-verify run` without a GPU headlined 'errors: 1 error line(s)' and
    offered 'Read the lines around it'; the cause (gpus) was the second FAIL."""
    from verify.checks import Check
    from verify.logparse.result import Options, build, parse_sources
    from verify.logparse.sources import expand
    from verify.policy import load_policy

    log = tmp_path / "rank0.log"
    log.write_text(NO_DRIVER)
    model, inputs = parse_sources(expand([str(log)]))
    inventory = (Check("benchmark", "fail", True, "all_reduce_perf exited with status 2"),
                 Check("efa_devices", "fail", True, "no EFA device in /sys/class/infiniband"),
                 Check("gpus", "fail", True, "0 GPUs: NVML cannot start: no NVIDIA driver "
                                             "visible in this container"))
    result = build(model, inputs, Options(), load_policy(None), "run", inventory)
    assert result["verdict"] == "fail"
    assert result["verdict_reason"].startswith("gpus: 0 GPUs"), result["verdict_reason"]
    assert [c["name"] for c in result["checks"]][:2] == ["gpus", "efa_devices"]
    first = result["errors"][0]
    assert (first["kind"], first["line"]) == ("no_gpu_driver", 3)
    assert "--gpus all" in first["fix"] and "Read the lines around it" not in first["fix"]
    errors = check(result, "errors")
    assert "first: [no_gpu_driver] Test CUDA failure common.cu:1180" in errors["message"]


@pytest.mark.parametrize("line", [
    "CUDA driver version is insufficient for CUDA runtime version",
    "RuntimeError: CUDA is not available to torch 2.13.0",
    "cudaErrorNoDevice: no CUDA-capable device is detected",
    "NVML: Driver Not Loaded",
])
def test_cuda_driver_errors_map_to_the_no_driver_diagnosis(line):
    from verify.logparse.model import diagnose

    assert diagnose(line, "test_failure")["id"] == "no-gpu-driver"


def test_a_table_without_a_redop_column_counts_no_ranks_from_its_ratio():
    """Corpus 045 (nccl-tests before 2.0, all_gather -g 8): busbw = algbw there, which
    would read as all_reduce on 2 ranks; without a rank count it stays unknown."""
    result = parse_paths([CORPUS / "045-nccltests-old-format-out-of-bounds-2-failed-allgather.log"],
                         instance="p5", expect_nodes=2)
    assert check(result, "bandwidth")["status"] == "unknown"
    assert "2 ranks" not in check(result, "bandwidth_derived")["message"]


@pytest.mark.parametrize("figure", ["inf", "nan", "-nan", "1e308"])
def test_an_impossible_average_is_an_error_at_its_line(tmp_path, figure):
    text = (CORPUS / "001-efa-gdr-p4d-nccl283-eks-nccltests.log").read_text()
    edited = text.replace("# Avg bus bandwidth    : 7.80081", f"# Avg bus bandwidth    : {figure}")
    assert edited != text
    result = parse_text(tmp_path, edited, instance="p4d", expect_nodes=2)
    bad = [e for e in result["errors"] if e["kind"] == "impossible_figure"]
    assert [e["line"] for e in bad] == [94] and result["verdict"] == "fail"
    assert result["busbw_avg_GBps"] is None
