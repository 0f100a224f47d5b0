"""Parser behaviour on the formats seen in the wild, and the verdict rules.

Log lines below are excerpts of the shared corpus (file named per test) or
built from its lines with a different prefix.
"""

import gzip
import json
import xml.etree.ElementTree as ET

import pytest

from tests import procs
from tests.parsehelp import check, parse_paths, parse_text
from tests.procs import VERIFY

# corpus 018 (aws-ofi-nccl 1.16.2, NCCL 2.27.3, p4d): a healthy rank.
GOOD_RANK = """\
{h}:188:585 [0] NCCL INFO NCCL version 2.27.3+cuda12.9
{h}:188:585 [0] NCCL INFO NET/OFI Initializing aws-ofi-nccl 1.16.2
{h}:188:585 [0] NCCL INFO NET/OFI Using Libfabric version 2.1
{h}:188:585 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa (found 1 nics)
{h}:188:585 [0] NCCL INFO Using network Libfabric
{h}:188:585 [0] NCCL INFO comm 0x556d504b7460 rank {r} nRanks 2 nNodes 2 localRanks 1 localRank 0 MNNVL 0
{h}:188:709 [0] NCCL INFO Channel 00/0 : {p}[0] -> {r}[0] [receive] via NET/Libfabric/0/GDRDMA
{h}:188:709 [0] NCCL INFO Channel 00/0 : {r}[0] -> {p}[0] [send] via NET/Libfabric/0/GDRDMA
"""
# nccl-tests new format rows (corpus 004, p5 2 nodes), with a 1 GiB row.
TABLE = """\
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
   536870912     134217728     float     sum      -1   2558.6  209.83  393.42      0   2560.8  209.65  393.10      0
  1073741824     268435456     float     sum      -1   4553.6  235.80  {bw}      {w}   4553.0  235.83  442.19      0
# Out of bounds values : {oob}
# Avg bus bandwidth    : 79.9352
"""


def good(host="node-a", rank=0, peer=1):
    return GOOD_RANK.format(h=host, r=rank, p=peer)


def table(bw="442.13", wrong=0, oob="0 OK"):
    return TABLE.format(bw=bw, w=wrong, oob=oob)


def slow_table(busbw: float) -> str:
    """TABLE with its 1 GiB row at `busbw` on both sides, algbw kept consistent (16 ranks)."""
    algbw = f"{busbw / 1.875:.2f}"
    return table(bw=f"{busbw:.2f}").replace("235.80", algbw).replace(
        "235.83  442.19", f"{algbw}  {busbw:.2f}")


def test_healthy_two_rank_run_passes_on_p5(tmp_path):
    result = parse_text(tmp_path, good() + good("node-b", 1, 0) + table(), instance="p5")
    assert result["verdict"] == "pass", result["verdict_reason"]
    assert (result["transport"], result["provider"]) == ("libfabric", "efa")
    assert result["efa_used"] is True and result["gdr_used"] is True
    assert (result["nodes"], result["ranks"]) == (2, 2)
    assert result["plugin_version"] == "1.16.2" and result["libfabric_version"] == "2.1"
    assert result["busbw_peak_GBps"] == 442.19 and result["wrong_values"] == 0
    assert {r["rank"]: r["gdr"] for r in result["ranks_detail"]} == {0: True, 1: True}


def test_one_rank_without_gdr_fails_the_job_and_is_named(tmp_path):
    bad = good("node-b", 1, 0).replace("/GDRDMA", "")
    result = parse_text(tmp_path, good() + bad + table(), instance="p5")
    assert result["gdr_used"] is False and result["verdict"] == "fail"
    detail = {r["rank"]: r["gdr"] for r in result["ranks_detail"]}
    assert detail == {0: True, 1: False}
    assert check(result, "gdr_used")["evidence"][0]["rank"] == 1


def test_one_rank_on_sockets_makes_transport_socket(tmp_path):
    bad = good("node-b", 1, 0).replace("NET/Libfabric/0/GDRDMA", "NET/Socket/0")
    result = parse_text(tmp_path, good() + bad, instance="p5")
    assert result["transport"] == "socket" and result["efa_used"] is False


def test_low_bandwidth_fails_against_the_published_figure(tmp_path):
    # p5 at 2 nodes: the lowest published expectation is 313.3 GB/s (bandwidth.yaml).
    result = parse_text(tmp_path, good() + good("node-b", 1, 0) + slow_table(200), instance="p5")
    bw = check(result, "bandwidth")
    assert bw["status"] == "fail" and "250.6" in bw["message"]
    assert "awesome" not in bw["message"] and "awsome-distributed-training" in bw["message"]
    assert bw["evidence"][0]["text"].startswith("all_reduce size 1073741824 B busbw 200.0")


def test_p4d_without_published_figure_is_judged_by_the_derived_floor(tmp_path):
    result = parse_text(tmp_path, good() + good("node-b", 1, 0) + table(), instance="p4d")
    assert check(result, "bandwidth")["status"] == "skip"
    derived = check(result, "bandwidth_derived")
    assert derived["status"] == "pass" and "derived floor (a model" in derived["message"]
    assert result["verdict"] == "pass"


def test_no_instance_type_makes_bandwidth_unknown(tmp_path):
    result = parse_text(tmp_path, good() + good("node-b", 1, 0) + table())
    assert check(result, "bandwidth")["status"] == "unknown"
    assert "--instance-type" in check(result, "bandwidth_derived")["message"]
    assert result["verdict"] == "inconclusive"


def test_wrong_values_and_out_of_bounds_fail(tmp_path):
    result = parse_text(tmp_path, good() + good("node-b", 1, 0)
                        + table(wrong=3, oob="3 FAILED"), instance="p5")
    assert result["wrong_values"] == 3
    assert check(result, "nccl_tests")["status"] == "fail"
    kinds = {e["kind"] for e in result["errors"]}
    assert {"wrong_values", "out_of_bounds"} <= kinds



def test_results_not_checked_leave_wrong_values_unknown(tmp_path):
    # nccl-tests -c 0 prints N/A under #wrong and still 'Out of bounds values : 0 OK'.
    unchecked = table().replace("      0   ", "    N/A   ").replace("      0\n", "    N/A\n")
    assert unchecked.count("N/A") == 4
    result = parse_text(tmp_path, good() + good("node-b", 1, 0) + unchecked, instance="p5")
    assert result["wrong_values"] is None and result["verdict"] == "pass"
    assert check(result, "nccl_tests")["status"] == "skip"
    assert "-c 0" in check(result, "nccl_tests")["message"]

def test_several_tests_top_level_is_the_last_complete(tmp_path):
    second = table().replace("79.9352", "12.5")
    truncated = "#       size         count      type   redop    root     time   algbw   busbw " \
                "#wrong     time   algbw   busbw #wrong\n         8    2   float  sum  -1  1.0  " \
                "0.00  0.00  0  1.0  0.00  0.00  0\n"
    result = parse_text(tmp_path, good() + table() + second + truncated)
    assert result["busbw_avg_GBps"] == 12.5
    assert [t["complete"] for t in result["tests"]] == [True, True, False]


def test_single_rank_bandwidth_is_unknown(tmp_path):
    text = ("# Using devices\n#  Rank  0 Group  0 Pid   2274 on host-a device  0 [0x01] H100\n"
            + table(bw="0.00").replace("442.19", "0.00"))
    result = parse_text(tmp_path, text, instance="p5")
    assert result["ranks"] == 1 and check(result, "bandwidth")["status"] == "unknown"
    # for the right reason: busbw is 0 by definition, not "no published figure"
    assert check(result, "bandwidth")["message"].startswith("single-rank run: bus bandwidth is 0")


def test_different_nccl_versions_fail(tmp_path):
    other = good("node-b", 1, 0).replace("2.27.3+cuda12.9", "2.26.2+cuda12.2")
    result = parse_text(tmp_path, good() + other)
    assert check(result, "nccl_version")["status"] == "fail"


def test_expect_provider_tcp_turns_provider_green_while_gdr_stays_red(tmp_path):
    # The shape of a single-GPU test machine run: aws-ofi-nccl over libfabric tcp.
    text = good().replace("efa, fabric is efa (found 1 nics)", "tcp;ofi_rxm").replace(
        "/GDRDMA", "")
    plain = parse_text(tmp_path, text)
    assert check(plain, "provider")["status"] == "fail" and plain["efa_used"] is False
    tcp = parse_text(tmp_path, text, expect_provider="tcp")
    assert check(tcp, "provider")["status"] == "pass"
    assert check(tcp, "gdr_used")["status"] == "fail" and tcp["verdict"] == "fail"


def test_expect_nodes(tmp_path):
    two = good() + good("node-b", 1, 0)
    assert check(parse_text(tmp_path, two, expect_nodes=2), "nodes")["status"] == "pass"
    assert check(parse_text(tmp_path, two, expect_nodes=4), "nodes")["status"] == "fail"


def test_gdrdma_over_libfabric_implies_efa_only_on_a_known_aws_instance(tmp_path):
    # corpus 022/049 shape: channels over Libfabric with GDRDMA, no provider line.
    text = ("host-a:1:2 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] "
            "via NET/Libfabric/0/GDRDMA\n")
    assert parse_text(tmp_path, text)["efa_used"] is None  # could be Slingshot's cxi
    assert parse_text(tmp_path, text, instance="p4d")["efa_used"] is True


@pytest.mark.parametrize("prefix", [
    "[1,3]<stdout>:", "[1,mpirank:3,algo-1]<stdout>:", "3: ", "10.0.87.143: 10.0.87.143: ",
    "  | 2024-12-04T05:27:39.074Z | ",
    "(RayTrainWorker pid=944, ip=10.67.132.117) ", "[2026-01-01 12:08:32] ",
])
def test_prefixes_seen_in_the_wild(tmp_path, prefix):
    text = "".join(prefix + line + "\n" for line in good().splitlines())
    result = parse_text(tmp_path, text)
    assert result["efa_used"] is True and result["gdr_used"] is True
    assert result["ranks_detail"][0]["host"] == "node-a"


def test_launcher_rank_tags_name_the_rank(tmp_path):
    # Open MPI --tag-output, and SageMaker's form of it (huggingface/accelerate issue
    # logs: '[1,mpirank:0,algo-1]<stdout>:algo-1:79:1300 [0] NCCL INFO Launch mode Parallel').
    text = ("[1,mpirank:5,algo-2]<stderr>:algo-2: Test NCCL failure common.cu:1001 'unhandled'\n"
            "[1,7]<stderr>:node: Test NCCL failure common.cu:1001 'unhandled system error'\n")
    assert [(e["rank"], e["line"]) for e in parse_text(tmp_path, text)["errors"]] == \
        [(5, 1), (7, 2)]


def test_records_with_their_prefix_stripped(tmp_path):
    # NVIDIA/nccl#527 (p4d, NCCL 2.9.9): a user shared the log with host:pid:tid [dev]
    # cut off, so records start their lines; other lines are fragments.
    text = ("NCCL INFO Bootstrap : Using eth0:<ip><0>\nNCCL/xml/p4d-24xl-topo.xml\n"
            "NCCL INFO NET/OFI Selected Provider is efa\nNCCLCollNetPlugin_v4 symbol.\n"
            "NCCL INFO Using network AWS Libfabric\n"
            "NCCL WARN NET/OFI Unable to find a protocol that worked.  Failing initialization.\n")
    result = parse_text(tmp_path, text)
    assert (result["transport"], result["provider"], result["efa_used"]) == \
        ("libfabric", "efa", True)
    assert [e["line"] for e in result["errors"]] == [6]


def test_a_record_cut_at_the_end_of_the_input_is_not_used(tmp_path):
    # A log cut mid-line (a killed job, `head -c`): the last channel line would read as
    # a connection without GDR.  It is left out, with a warning naming it.
    cut = (good() + good("node-b", 1, 0)).rstrip("\n")[:-4]
    assert cut.endswith("via NET/Libfabric/0/GD")
    result = parse_text(tmp_path, cut)
    assert result["gdr_used"] is True and result["efa_used"] is True
    (warning,) = result["errors"]
    assert warning["kind"] == "truncated_input" and warning["severity"] == "warning"
    assert warning["line"] == 15 and "/0/GD" in warning["message"]
    # A last line that is not an NCCL record (nccl-tests output) is still read.
    assert parse_text(tmp_path, table().rstrip("\n"))["busbw_avg_GBps"] == 79.9352


def test_crlf_and_garbage_bytes(tmp_path):
    text = good().replace("\n", "\r\n").encode() + b"\x00\xff\xfe garbage \x80\r\n"
    result = parse_text(tmp_path, text)
    assert result["efa_used"] is True and result["provider"] == "efa"
    assert all("\r" not in e["text"] for e in result["findings"]["efa_used"]["evidence"])


def test_glued_cloudwatch_lines(tmp_path):
    # corpus 006: two records on one physical line joined by ' | '.
    line = ("  | 2025-05-16T16:39:51.208-07:00ip-10-36-29-253:79:79 [0] NCCL INFO NET/Plugin: "
            "Failed to find ncclCollNetPlugin_v8 symbol. | ip-10-36-29-253:79:79 [0] NCCL INFO "
            "Using network Libfabric | ip-10-36-29-253:79:79 [0] NCCL INFO NET/OFI Selected "
            "provider is efa, fabric is efa (found 4 nics)\n")
    result = parse_text(tmp_path, line)
    assert result["transport"] == "libfabric" and result["provider"] == "efa"


def test_glued_duplicate_failure_lines_are_one_error(tmp_path):
    # corpus 006 (CloudWatch): each failure printed twice on one line, ' | ' between.
    line = ("  | 2025-05-16T16:39:51.208-07:00libfabric:85:1747438790::core:core:fi_getinfo_():"
            "1392<warn> fi_getinfo: provider efa output empty list | libfabric:85:1747438790::"
            "core:core:fi_getinfo_():1392<warn> fi_getinfo: provider efa output empty list\n"
            "  | 2025-05-16T16:39:55.215-07:00ip-10-36-29-253:82:2548 [0] nccl_net_ofi_init:155 "
            "NCCL WARN NET/OFI Initializing plugin failed | ip-10-36-29-253:82:2548 [0] "
            "nccl_net_ofi_init:155 NCCL WARN NET/OFI Initializing plugin failed\n")
    nested = ("h:1:2 [0] NCCL WARN libfabric:9:1::efa:cq:efa_cq_poll():12<warn> cq error\n")
    after_info = "h:1:2 [0] NCCL INFO Using network Libfabric | h:1:2 [0] NCCL WARN NET/OFI x\n"
    errors = parse_text(tmp_path, line + nested + after_info)["errors"]
    assert [(e["line"], e["occurrences"], e["message"]) for e in errors] == [
        (1, 2, "fi_getinfo: provider efa output empty list"),
        (2, 2, "NET/OFI Initializing plugin failed"),
        (3, 1, "libfabric:9:1::efa:cq:efa_cq_poll():12<warn> cq error"),  # the WARN, whole
        (3, 1, "cq error"),  # and libfabric's record it quotes
        (4, 1, "NET/OFI x")]  # glued after an INFO record: counted once


def test_gzip_directory_and_stdin(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "node-a.188").write_text(good())
    with gzip.open(logs / "node-b.189.gz", "wt") as handle:
        handle.write(good("node-b", 1, 0))
    result = parse_paths([logs])
    assert result["nodes"] == 2 and len(result["inputs"]) == 2
    proc = procs.run([*VERIFY, "parse", "-", "--json"], input=good().encode(),
                     capture_output=True)
    assert b'"efa_used": true' in proc.stdout


def test_empty_and_truncated_inputs_are_inconclusive(tmp_path):
    empty = parse_text(tmp_path, "")
    assert empty["verdict"] == "inconclusive" and "no NCCL lines found" in empty["verdict_reason"]
    truncated = parse_text(tmp_path, good().splitlines()[0][:30])
    assert truncated["verdict"] == "inconclusive"


@pytest.mark.parametrize("text", [
    "epoch 1 loss 0.51\nepoch 2 loss 0.47\n",
    # libfabric's own log and an environment dump are not NCCL lines: no confident FAIL
    "export FI_PROVIDER=tcp\nlibfabric:18058:1733290059::efa:core:fi_getinfo_():1392<warn> "
    "fi_getinfo: provider efa output empty list\n",
])
def test_input_without_an_nccl_line_is_inconclusive_exit_3(tmp_path, text):
    path = tmp_path / "train.log"
    path.write_text(text)
    proc = procs.run([*VERIFY, "parse", str(path), "--json"], capture_output=True,
                          text=True)
    assert proc.returncode == 3, proc.stdout[-500:] + proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "inconclusive"
    assert result["verdict_reason"].startswith("no NCCL lines found")


def test_connected_all_rings_gdr_summary_is_not_evidence(tmp_path):
    # corpus 017/018 trap: the ring summary says GDR 1 with no NET connection at all.
    text = ("h:1:2 [0] NCCL INFO Using network Libfabric\n"
            "h:1:2 [0] NCCL INFO Connected all rings, use ring PXN 0 GDR 1\n")
    assert parse_text(tmp_path, text)["gdr_used"] is None


def test_nccl_24_socket_line_alone_does_not_mean_sockets(tmp_path):
    # corpus 020 trap: NCCL 2.4 prints NET/Socket : Using even when the OFI plugin runs;
    # the plugin that selected efa is the network (issue 15), never the Socket line.
    text = ("ip-1:25604:25604 [0] NCCL INFO NET/Socket : Using [0]eth0:192.168.16.255<0>\n"
            "ip-1:25604:25604 [0] NCCL INFO NET/OFI Selected Provider is efa\n")
    assert parse_text(tmp_path, text)["transport"] == "libfabric"


def test_errors_carry_cause_and_fix(tmp_path):
    text = ("[2026-01-01 12:08:32] h:194:710 [0] int cm_req_handle_error_entry(x):46 NCCL WARN "
            "NET/OFI Request 0x7f completed with error. RC: 103. Error: 4126 (Unresponsive "
            "receiver (reachable by EFA device but handshake failed) My EFA addr: "
            "fi_addr_efa://[fe80::1]:0:1\n")
    err = parse_text(tmp_path, text)["errors"][0]
    assert err["kind"] == "network_unreachable" and "security group" in err["fix"]
    assert err["line"] == 1 and err["severity"] == "error"


def test_libfabric_benign_warning_is_not_an_error(tmp_path):
    text = ("libfabric:18058:1733290059::efa:ep_ctrl:efa_rdm_ep_set_shared_memory_permitted():"
            "1410<warn> FI_OPT_SHARED_MEMORY_PERMITTED set to false\n")
    result = parse_text(tmp_path, text)
    assert [e["severity"] for e in result["errors"]] == ["warning"]
    assert check(result, "errors")["status"] == "pass"


def test_cli_exit_codes_and_reports(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(good() + good("node-b", 1, 0) + table())
    junit, md, out = tmp_path / "r.xml", tmp_path / "r.md", tmp_path / "r.json"
    ok = procs.run([*VERIFY, "parse", str(log), "--instance-type", "ml.p5.48xlarge",
                    "--junit", str(junit), "--markdown", str(md), "-o", str(out)],
                   capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    assert "VERDICT: PASS" in ok.stdout
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 8
    assert "## efa-verify parse: PASS" in md.read_text() and out.read_text().startswith("{")
    fail = procs.run([*VERIFY, "parse", str(log), "--instance-type", "p5",
                      "--expect-nodes", "3"], capture_output=True, text=True)
    assert fail.returncode == 1
    inconclusive = procs.run([*VERIFY, "parse", str(log)], capture_output=True, text=True)
    assert inconclusive.returncode == 3
    bad = procs.run([*VERIFY, "parse", str(tmp_path / "missing.log")],
                    capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    bad_instance = procs.run([*VERIFY, "parse", str(log), "--instance-type", "x9"],
                             capture_output=True, text=True)
    assert bad_instance.returncode == 2 and "unknown instance type" in bad_instance.stderr


def test_junit_failure_and_skips(tmp_path):
    log = tmp_path / "sock.log"
    log.write_text(good().replace("NET/Libfabric/0/GDRDMA", "NET/Socket/0"))
    junit = tmp_path / "r.xml"
    procs.run([*VERIFY, "parse", str(log), "--junit", str(junit)], capture_output=True)
    cases = {c.get("name"): c for c in ET.parse(junit).getroot()}
    assert cases["transport"].find("failure") is not None
    assert cases["bandwidth"].find("skipped") is not None


@pytest.mark.parametrize("text,transport,gdr,efa", [
    # NCCL 2.12+ with PXN prints the proxy rank after the device: NET/IB/0(1)/GDRDMA.
    ("h:1:2 [0] NCCL INFO Channel 00/0 : 8[0] -> 0[0] [receive] via NET/IB/0(1)/GDRDMA\n"
     "h:1:2 [0] NCCL INFO Channel 01/0 : 8[0] -> 0[0] [receive] via NET/IB/1(9)/GDRDMA\n",
     "ib", True, False),
    # NVIDIA's SHARP plugin names its network IBext_v8: still IB.
    ("h:1:2 [0] NCCL INFO Using network IBext_v8\n"
     "h:1:2 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] via NET/IBext_v8/0/GDRDMA\n",
     "ib", True, False),
], ids=["pxn", "ibext"])
def test_ib_network_variants(tmp_path, text, transport, gdr, efa):
    result = parse_text(tmp_path, text)
    assert result["transport"] == transport and result["gdr_used"] is gdr
    assert result["efa_used"] is efa


def test_efa_direct_fabric_is_efa(tmp_path):
    text = good().replace("efa, fabric is efa (found 1 nics)",
                          "efa-direct, fabric is efa-direct (found 32 nics)")
    result = parse_text(tmp_path, text)
    assert result["efa_used"] is True and check(result, "provider")["status"] == "pass"


def test_unknown_network_is_named_not_guessed(tmp_path):
    text = "h:1:2 [0] NCCL INFO Using network GPUDirectTCPX\n"
    result = parse_text(tmp_path, text)
    assert result["transport"] is None and result["efa_used"] is False
    assert "GPUDirectTCPX" in result["findings"]["transport"]["reason"]


def test_json_wrapped_container_logs(tmp_path):
    # Docker's json-file / CloudWatch JSON: each record inside a JSON string.
    line = '{{"log":"{}\\n","stream":"stdout","time":"2024-01-01T00:00:00Z"}}\n'
    text = "".join(line.format(rec) for rec in good().splitlines())
    result = parse_text(tmp_path, text)
    assert result["efa_used"] is True and result["gdr_used"] is True
