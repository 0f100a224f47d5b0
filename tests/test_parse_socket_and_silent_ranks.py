"""README: "one socket rank among N fails the verdict" and "the verifier never guesses:
unknown is null" -- the attack-2 cases SA-3 (socket use hidden by other lines) and SA-4
(a node listed by nccl-tests that printed nothing)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.parsehelp import check, parse_paths, parse_text

HEADER = """\
# nThread 1 nGpus 1 minBytes 8 maxBytes 1073741824 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
#  Rank  0 Group  0 Pid   1234 on      host1 device  0 [0x10] NVIDIA H100
#  Rank  1 Group  0 Pid   2234 on      host2 device  0 [0x10] NVIDIA H100
"""


def _rank(host: str, pid: int, rank: int, n: int, network: str = "Libfabric") -> str:
    return (f"{host}:{pid}:{pid} [0] NCCL INFO NET/OFI Selected Provider is efa (found 32 nics)\n"
            f"{host}:{pid}:{pid} [0] NCCL INFO Using network {network}\n"
            f"{host}:{pid}:{pid + 16} [0] NCCL INFO Channel 00/0 : {(rank - 1) % n}[0] -> "
            f"{rank}[0] [receive] via NET/Libfabric/0/GDRDMA\n"
            f"{host}:{pid}:{pid + 16} [0] NCCL INFO Channel 00/0 : {rank}[0] -> "
            f"{(rank + 1) % n}[0] [send] via NET/Libfabric/0/GDRDMA\n")


HEALTHY = HEADER + _rank("host1", 1234, 0, 2) + _rank("host2", 2234, 1, 2)
SOCKET_LINE = "host2:2234:2234 [0] NCCL INFO Using network Socket\n"


def test_the_healthy_two_node_log_passes(tmp_path):
    assert parse_text(tmp_path, HEALTHY, instance="p5")["verdict"] == "pass"


def test_socket_then_libfabric_in_one_process_fails_and_cites_the_socket_line(tmp_path):
    """P-sock-then-ofi: the rank used sockets for one communicator."""
    text = HEADER + _rank("host1", 1234, 0, 2) + _rank("host2", 2234, 1, 2).replace(
        "Using network Libfabric\n", "Using network Socket\nhost2:2234:2234 [0] NCCL INFO "
        "Using network Libfabric\n")
    result = parse_text(tmp_path, text, instance="p5")
    assert result["verdict"] == "fail" and result["transport"] == "socket"
    assert result["efa_used"] is False
    assert [e["line"] for e in check(result, "transport")["evidence"]] == [9]


def test_socket_from_a_host_outside_the_rank_list_fails(tmp_path):
    """P-sock3: host3 is in no '# Rank' line; its line still counts."""
    text = HEALTHY + SOCKET_LINE.replace("host2:2234", "host3:3234")
    assert parse_text(tmp_path, text, instance="p5")["transport"] == "socket"


def test_socket_in_a_second_log_file_fails(tmp_path):
    """P-split-logs / P-good-plus-sockonly: per-rank logs given to one parse."""
    (tmp_path / "a.log").write_text(HEALTHY)
    (tmp_path / "s9.log").write_text("host9:1:1 [0] NCCL INFO Using network Socket\n")
    result = parse_paths([tmp_path / "a.log", tmp_path / "s9.log"], instance="p5")
    assert result["verdict"] == "fail"
    assert {e["file"].rsplit("/", 1)[-1] for e in check(result, "transport")["evidence"]} \
        == {"s9.log"}


def test_the_socket_rank_is_socket_in_its_row(tmp_path):
    text = HEALTHY + "host2:2234:2234 [0] NCCL INFO comm 0x55 rank 1 nRanks 2 nNodes 2 localRanks 1 " \
          "localRank 0 MNNVL 0\n" + SOCKET_LINE
    rows = {r["rank"]: r["transport"] for r in parse_text(tmp_path, text, instance="p5")
            ["ranks_detail"]}
    assert rows[1] == "socket" and rows[0] == "libfabric"


def test_the_socket_interface_init_line_is_not_socket_use(tmp_path):
    """field-notes s.3: `NET/Socket : Using [0]eth0` is printed before OFI is chosen."""
    text = HEALTHY.replace("host2:2234:2234 [0] NCCL INFO Using network Libfabric\n",
                           "host2:2234:2234 [0] NCCL INFO NET/Socket : Using [0]eth0:"
                           "10.0.0.2<0>\nhost2:2234:2234 [0] NCCL INFO Using network Libfabric\n")
    assert parse_text(tmp_path, text, instance="p5")["verdict"] == "pass"


def test_a_listed_node_with_no_nccl_line_is_unknown_not_pass(tmp_path):
    """P-missing: host3 is listed by nccl-tests and printed nothing."""
    text = HEALTHY.replace(
        "#  Rank  1", "#  Rank  2 Group  0 Pid   3234 on      host3 device  0 [0x10] NVIDIA "
        "H100\n#  Rank  1")
    result = parse_text(tmp_path, text, instance="p5")
    assert result["verdict"] == "inconclusive"
    assert result["transport"] is None and result["efa_used"] is None
    assert check(result, "transport")["status"] == "unknown"
    assert [e["line"] for e in check(result, "transport")["evidence"]] == [3]
    rows = {r["rank"]: r for r in result["ranks_detail"]}
    assert rows[2]["host"] == "host3" and rows[2]["transport"] is None
    jsonschema.validate(result, json.loads(
        (ROOT / "verify" / "schema" / "result.schema.json").read_text()))


def test_a_listed_rank_whose_node_printed_is_not_unknown(tmp_path):
    """Corpus 001: only some ranks of a node print NCCL lines; the node was heard from."""
    text = HEALTHY.replace(
        "#  Rank  1", "#  Rank  2 Group  0 Pid   1235 on      host1 device  1 [0x10] NVIDIA "
        "H100\n#  Rank  1")
    assert parse_text(tmp_path, text, instance="p5")["verdict"] == "pass"


def test_a_silent_node_does_not_hide_a_failure(tmp_path):
    text = HEALTHY.replace(
        "#  Rank  1", "#  Rank  2 Group  0 Pid   3234 on      host3 device  0 [0x10] NVIDIA "
        "H100\n#  Rank  1") + SOCKET_LINE
    assert parse_text(tmp_path, text, instance="p5")["verdict"] == "fail"


SOCKET_USE = ("{h}:{p}:{p} [0] NCCL INFO Using network Socket",
              "{h}:{p}:{p} [0] NCCL INFO Assigned NET plugin Socket to comm",
              "{h}:{p}:{t} [0] NCCL INFO Channel 01/0 : {r}[0] -> {s}[0] [send] via NET/Socket/0")


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_one_socket_use_line_anywhere_never_passes(data):
    """N ranks over several files; one socket-use line for any rank, in any file, at any
    position: never PASS (and the unchanged job does pass, so this can fail)."""
    n = data.draw(st.integers(2, 8), label="ranks")
    nfiles = data.draw(st.integers(1, min(n, 4)), label="files")
    header = "".join(f"#  Rank {r:2d} Group  0 Pid {1000 + r:6d} on node-{r} device  0 "
                     "[0x10] NVIDIA H100\n" for r in range(n))
    files = [[] for _ in range(nfiles)]
    files[0] += header.splitlines()
    for r in range(n):
        files[r % nfiles] += _rank(f"node-{r}", 1000 + r, r, n).splitlines()
    bad = data.draw(st.integers(0, n - 1), label="socket rank")
    where = data.draw(st.integers(0, nfiles - 1), label="file")
    at = data.draw(st.integers(0, len(files[where])), label="position")
    line = data.draw(st.sampled_from(SOCKET_USE), label="line").format(
        h=f"node-{bad}", p=1000 + bad, t=1016 + bad, r=bad, s=(bad + 1) % n)
    with tempfile.TemporaryDirectory() as tmp:
        def run(contents: list[list[str]]) -> str:
            paths = []
            for i, lines in enumerate(contents):
                paths.append(Path(tmp) / f"rank{i}.log")
                paths[-1].write_text("\n".join(lines) + "\n")
            return parse_paths(paths, instance="p4d")["verdict"]

        assert run(files) == "pass"
        files[where].insert(at, line)
        assert run(files) != "pass"
