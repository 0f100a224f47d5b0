"""Verdict rules the shared corpus shows only in passing, with logs written here
(line shapes of corpus 018: aws-ofi-nccl 1.16.2, NCCL 2.27.3), so a GitHub runner
without ../shared runs them too."""

from tests.parsehelp import check, parse_text

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
    assert errors["status"] == "fail" and errors["message"] == "1 error line(s)"
    assert "Unresponsive receiver" in errors["evidence"][0]["text"]
    assert result["verdict"] == "fail" and result["verdict_reason"].startswith("errors")
