"""When ranks disagree, the job's transport is the worst any rank used: socket, then IB,
then Libfabric.  The fixture is in tests/fixtures/logs (no ../shared needed)."""

from tests.conftest import FIXTURES
from tests.parsehelp import check, parse_paths, parse_text

DISAGREE = FIXTURES / "logs" / "ranks-disagree-ib-socket.log"


def test_socket_outranks_ib_when_ranks_disagree():
    result = parse_paths([DISAGREE])
    assert result["transport"] == "socket"
    assert {d["rank"]: (d["transport"], d["gdr"]) for d in result["ranks_detail"]} == \
        {0: ("ib", True), 1: ("socket", False)}
    transport = check(result, "transport")
    assert transport["status"] == "fail"
    # the evidence is the socket rank's channel lines, not the IB rank's
    assert {(e["rank"], e["line"]) for e in transport["evidence"]} == {(1, 12), (1, 13)}
    assert result["efa_used"] is False and result["gdr_used"] is False
    assert result["verdict"] == "fail"


def test_the_order_of_the_ranks_in_the_input_does_not_matter(tmp_path):
    lines = DISAGREE.read_text().splitlines(keepends=True)
    socket_first = "".join(lines[6:] + lines[:6])
    assert parse_text(tmp_path, socket_first)["transport"] == "socket"


def test_socket_outranks_ib_from_using_network_lines_alone(tmp_path):
    using = [line for line in DISAGREE.read_text().splitlines(keepends=True)
             if "Channel" not in line]
    result = parse_text(tmp_path, "".join(using))
    assert result["transport"] == "socket"
    assert "Using network Socket" in check(result, "transport")["evidence"][0]["text"]


def test_ib_outranks_libfabric_when_ranks_disagree(tmp_path):
    lines = DISAGREE.read_text().splitlines(keepends=True)
    ib_rank = "".join(lines[:6])
    efa_rank = ("node-b:188:585 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa "
                "(found 1 nics)\n"
                "node-b:188:585 [0] NCCL INFO Using network Libfabric\n"
                "node-b:188:709 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[0] [receive] via "
                "NET/Libfabric/0/GDRDMA\n")
    result = parse_text(tmp_path, efa_rank + ib_rank)
    assert result["transport"] == "ib" and result["efa_used"] is False
    # the reason names the network, though one rank's provider line says efa
    assert "NCCL used ib, not the Libfabric network" in check(result, "efa_used")["message"]
