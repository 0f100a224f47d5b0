"""Evidence classes of issue 15: each generic fact about NCCL and aws-ofi-nccl has a
public case (tests/fixtures/evidence, origins in its SOURCES.md) or, where none was
found, a minimal synthetic excerpt named `synthetic-*`."""

import dataclasses
import re
from pathlib import Path

import pytest

from tests.conftest import CORPUS
from tests.parsehelp import check, parse_paths, parse_text
from verify import profiles
from verify.logparse.result import Options, build, parse_sources
from verify.logparse.sources import expand
from verify.policy import load_policy
from verify.profiles import resolve
from verify.report import to_table
from verify.tables import TableError, load_table

FIXTURES = Path(__file__).parent / "fixtures" / "evidence"


def parse(name: str, **kw) -> dict:
    return parse_paths([FIXTURES / name], **kw)


def errors(result: dict) -> list[dict]:
    return [e for e in result["errors"] if e["severity"] == "error"]


def test_every_fixture_has_its_origin_recorded():
    sources = (FIXTURES / "SOURCES.md").read_text()
    for path in FIXTURES.glob("*.log"):
        assert f"| {path.name} |" in sources, path.name
        row = next(line for line in sources.splitlines() if line.startswith(f"| {path.name} |"))
        assert ("**synthetic**" in row) == path.name.startswith("synthetic-"), row


def test_new_pattern_rows_name_their_reason_and_source():
    rows = {r["name"]: r for r in load_table("log_patterns")["patterns"]}
    for name in ("trace_transport", "ib_using", "plugin_warn", "nodes_summary", "test_failure",
                 "ib_no_device", "nccl_version_in_error"):
        assert rows[name]["why"] and (rows[name].get("source") or name == "plugin_warn"), name


@pytest.mark.parametrize(("name", "transport"), [
    ("trace-net-socket.log", "socket"),
    ("trace-net-ib.log", "ib"),
    ("trace-ofi-function.log", "libfabric"),
])
def test_an_error_trace_names_the_transport(name, transport):
    result = parse(name)
    assert result["transport"] == transport, result["findings"]["transport"]
    assert "error trace" in result["findings"]["transport"]["reason"]
    assert result["findings"]["transport"]["evidence"]


def test_trace_through_verbs_is_not_ib_when_ib_has_no_device(tmp_path):
    text = ("h:1:1 [0] misc/ibvwrap.cc:63 NCCL WARN Failed to open libibverbs.so[.1]\n"
            "h:1:1 [0] NCCL INFO NET/Plugin : No plugin found (libnccl-net.so).\n")
    assert parse_text(tmp_path, text)["transport"] == "socket"


def test_no_plugin_and_no_ib_device_is_socket_without_a_socket_line():
    result = parse("no-plugin-no-ib.log")
    assert (result["transport"], result["efa_used"], result["gdr_used"]) == ("socket", False, False)


def test_a_selected_efa_provider_is_the_plugins_network_on_nccl_24():
    result = parse("selected-provider-nccl248.log")
    assert (result["transport"], result["provider"], result["efa_used"]) == \
        ("libfabric", "efa", True)
    assert "Selected Provider is efa" in result["findings"]["transport"]["evidence"][0]["text"]


def test_a_later_plugin_failure_overrides_the_selected_provider(tmp_path):
    text = ("h:1:1 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa (found 4 nics)\n"
            "h:1:1 [0] nccl_net_ofi_init:1 NCCL WARN NET/OFI aws-ofi-nccl initialization failed\n")
    assert parse_text(tmp_path, text)["transport"] != "libfabric"


def test_nccl_24_ib_roce_line_means_ib_and_its_socket_line_is_the_bootstrap():
    result = parse("nccl24-ib-roce.log")
    assert result["transport"] == "ib" and result["efa_used"] is False


def test_the_plugins_own_log_format_is_read():
    result = parse("plugin-own-format.log")
    assert (result["transport"], result["provider"], result["efa_used"]) == \
        ("libfabric", "efa", True)


def test_a_warn_in_the_plugins_own_format_is_an_error():
    found = errors(parse("synthetic-plugin-warn.log"))
    assert found and "Unresponsive receiver" in found[0]["message"]


def test_a_provider_other_than_efa_through_the_plugin_is_not_efa():
    result = parse("provider-cxi.log")
    assert (result["provider"], result["efa_used"]) == ("cxi", False)


def test_a_plugin_line_without_its_nccl_info_marker_is_evidence():
    result = parse("stripped-marker.log")
    assert (result["provider"], result["efa_used"]) == ("efa", True)


def test_nodes_from_nnodes_without_hostnames():
    assert parse("nodes-nnodes-no-hosts.log")["nodes"] == 2


def test_nodes_from_nranks_and_local_ranks_on_one_pods_log():
    result = parse("synthetic-nodes-local-ranks.log", expect_nodes=2)
    assert result["nodes"] == 2 and check(result, "nodes")["status"] == "pass"


@pytest.mark.parametrize(("name", "kind"), [
    ("watchdog-timeout.log", "collective_timeout"),
    ("communication-aborted.log", "nccl_system_error"),
    ("synthetic-efa-rdma-abort.log", "provider_unavailable"),
    ("synthetic-only-efa-fallback.log", "plugin_init_failed"),
])
def test_failures_outside_ncclss_logger_and_fallback_warns_are_errors(name, kind):
    found = errors(parse(name))
    assert found and found[0]["kind"] == kind and found[0]["fix"], found


def test_gdr_write_on_receives_without_gdr_read_on_sends_is_gdr_used():
    result = parse("synthetic-gdr-receive-only.log")
    assert result["gdr_used"] is True, result["findings"]["gdr_used"]
    reason = result["findings"]["gdr_used"]["reason"]
    assert "[receive]" in reason and "[send]" in reason
    assert result["gdr_directions"] == {"receive": True, "send": False}
    assert check(result, "gdr_used")["status"] == "pass"  # no profile asks for both
    # Each rank reads as the job does: GDR used, on receives only.
    assert [(r["gdr"], r["gdr_receive"], r["gdr_send"]) for r in result["ranks_detail"]] == \
        [(True, True, False)] * 2


def test_gdr_on_receives_only_fails_where_the_profile_wants_both_directions():
    result = parse("synthetic-gdr-receive-only.log", instance="p5")
    assert resolve("p5").gdr_both_directions is True
    assert result["gdr_used"] is True  # GDR was used; the instance wants more
    found = check(result, "gdr_used")
    assert found["status"] == "fail" and "NCCL_NET_GDR_READ" in found["message"], found
    texts = [e["text"] for e in found["evidence"]]
    assert any("[receive]" in t for t in texts) and any("[send]" in t for t in texts), texts


def test_gdr_on_receives_only_passes_where_the_profile_wants_receives_only():
    """A profile row whose NCCL leaves GDR read off by default (a PCIe machine before
    Ampere): the same log passes."""
    model, inputs = parse_sources(expand([str(FIXTURES / "synthetic-gdr-receive-only.log")]))
    receive_only = dataclasses.replace(resolve("p5"), gdr_both_directions=False)
    result = build(model, inputs, Options(receive_only, "--instance-type"), load_policy(None))
    assert check(result, "gdr_used")["status"] == "pass"


def test_a_send_without_gdr_where_receives_lack_it_too_is_no_gdr_per_rank(tmp_path):
    text = (FIXTURES / "synthetic-gdr-receive-only.log").read_text().replace(
        "1[0] -> 0[0] [receive] via NET/Libfabric/0/GDRDMA", "1[0] -> 0[0] [receive] via NET/Libfabric/0")
    rows = {r["rank"]: r for r in parse_text(tmp_path, text)["ranks_detail"]}
    assert (rows[0]["gdr"], rows[0]["gdr_receive"], rows[0]["gdr_send"]) == (False, False, False)
    assert (rows[1]["gdr"], rows[1]["gdr_receive"]) == (True, True)


@pytest.mark.parametrize(("entry", "says"), [
    (None, "must be {expected, reason, source}"),
    ({"expected": "yes", "reason": "r", "source": "s"}, "true, false or null"),
    ({"expected": True, "reason": " ", "source": "s"}, "non-empty text"),
    ({"expected": True, "reason": "r", "source": "s", "extra": 1}, "must be {expected"),
])
def test_gdr_both_directions_rows_are_validated(entry, says):
    row = dict(load_table("instances")["profiles"]["p5.48xlarge"], gdr_both_directions=entry)
    with pytest.raises(TableError, match=re.escape(says)):
        profiles._build("p5.48xlarge", row)


def test_gdr_both_directions_is_not_expected_without_gdr():
    row = dict(load_table("instances")["profiles"]["g5.xlarge"],
               gdr_both_directions={"expected": True, "reason": "r", "source": "s"})
    with pytest.raises(TableError, match="gdr_capable is false"):
        profiles._build("g5.xlarge", row)
    assert all((p.gdr_both_directions is None) == (not p.gdr_capable)
               for p in profiles.all_profiles().values())


def test_a_receive_without_gdr_is_still_no_gdr(tmp_path):
    text = (FIXTURES / "synthetic-gdr-receive-only.log").read_text().replace(
        "1[0] -> 0[0] [receive] via NET/Libfabric/0/GDRDMA", "1[0] -> 0[0] [receive] via NET/Libfabric/0")
    assert parse_text(tmp_path, text)["gdr_used"] is False


def test_no_network_connection_means_no_gdr():
    result = parse("synthetic-single-node-no-network.log")
    assert (result["efa_used"], result["gdr_used"]) == (False, False)


def test_no_network_but_missing_channel_lines_leaves_gdr_unknown(tmp_path):
    lines = (FIXTURES / "synthetic-single-node-no-network.log").read_text().splitlines()
    text = "\n".join(line for line in lines if "1[1] -> 0[0]" not in line) + "\n"
    assert parse_text(tmp_path, text)["gdr_used"] is None


needs_corpus = pytest.mark.skipif(not (CORPUS / "LABELS.json").is_file(), reason="no corpus")


def test_nccl_version_from_a_traceback_line_says_so(tmp_path):
    text = ("h:1:2 [0] NCCL INFO NCCL version 2.27.3+cuda12.9\n"
            "[rank0]: torch.distributed.DistBackendError: NCCL error in: x.cpp:3699, remote "
            "process exited or there was a network error, NCCL version 2.27.3\n")
    result = parse_text(tmp_path, text)
    assert result["nccl_version"] == "2.27.3+cuda12.9"  # one version, from the version line
    assert "Error" not in check(result, "nccl_version")["evidence"][0]["text"]


@needs_corpus
def test_nccl_version_only_in_torchs_error_is_named_as_such():
    result = parse_paths([next(CORPUS.glob("049-*"))])
    assert result["nccl_version"] == "2.27.3"
    assert "torch's error message" in check(result, "nccl_version")["message"]


@needs_corpus
def test_text_report_never_cuts_a_message_mid_word():
    text = to_table(parse_paths([next(CORPUS.glob("049-*"))]))
    assert "EFA addr: fi_\n" not in text and "[...]" in text


def test_provider_check_never_passes_on_a_line_that_names_no_provider(tmp_path):
    text = ("h:1:2 [0] NCCL INFO NET/OFI Running on p4d.24xlarge platform\n"
            "h:1:2 [0] NCCL INFO Using network Libfabric\n"
            "h:1:2 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] via NET/Libfabric/0/GDRDMA\n")
    result = parse_text(tmp_path, text)
    assert result["provider"] is None and check(result, "provider")["status"] == "unknown"


def _many_ranks(tmp_path, bad_rank: int | None = None, ranks: int = 3000) -> Path:
    """A log of `ranks` processes, a host and pid each (as a big job prints), so nearly
    every piece is new and tier 1 counts masked shapes."""
    from tests.test_parse_formats import good, table

    text = "".join(good(f"node-{r:05d}", r, r ^ 1).replace(":188:", f":{1000 + r}:")
                   for r in range(ranks))
    if bad_rank is not None:
        one = good(f"node-{bad_rank:05d}", bad_rank, bad_rank ^ 1).replace(
            ":188:", f":{1000 + bad_rank}:")
        text = text.replace(one, one.replace("/GDRDMA", ""))
    path = tmp_path / "big.log"
    path.write_text(text + table())
    return path


SUMMARY = ("verdict", "transport", "provider", "efa_used", "gdr_used", "nccl_version",
           "plugin_version", "libfabric_version", "nodes", "ranks", "busbw_avg_GBps",
           "busbw_peak_GBps", "wrong_values")


def _checks(result: dict) -> list[tuple]:
    """Each check's verdict; its cited lines may be other lines saying the same."""
    return [(c["name"], c["status"], c["message"], bool(c["evidence"]))
            for c in result["checks"]]


@pytest.mark.parametrize("bad_rank", [None, 2717])
def test_shape_counting_at_scale_agrees_with_piece_counting(tmp_path, monkeypatch, bad_rank):
    from verify.logparse import tier1

    log = _many_ranks(tmp_path, bad_rank)
    counter = tier1.Tier1Counter()
    from verify.logparse.sources import file_blocks
    for block in file_blocks(log):
        counter.scan(block, counter.lines + 1)
    assert counter._by_class  # the test exercises shape counting
    by_shape = parse_paths([log], instance="p5")
    monkeypatch.setattr(tier1, "CLASS_MIN_PIECES", 10 ** 9)
    by_piece = parse_paths([log], instance="p5")
    assert {k: by_shape[k] for k in SUMMARY} == {k: by_piece[k] for k in SUMMARY}
    assert _checks(by_shape) == _checks(by_piece)
    assert [(e["kind"], e["message"], e["occurrences"]) for e in by_shape["errors"]] == \
        [(e["kind"], e["message"], e["occurrences"]) for e in by_piece["errors"]]
    assert len(by_piece["ranks_detail"]) == 3000  # shapes: only the ranks of cited lines
    assert {r["rank"] for r in by_shape["ranks_detail"]} <= {r["rank"] for r in
                                                               by_piece["ranks_detail"]}
    if bad_rank is not None:  # the rank without GDR is still named, by its own line
        assert by_shape["gdr_used"] is False
        assert check(by_shape, "gdr_used")["evidence"][0]["rank"] in (bad_rank, bad_rank ^ 1)
        detail = {r["rank"]: r["gdr"] for r in by_shape["ranks_detail"]}
        assert detail[bad_rank] is False or detail[bad_rank ^ 1] is False
    # counted without their ranks, connections are not counted per rank: no invented counts
    assert all("net_connections" not in r for r in by_shape["ranks_detail"])


def test_timestamped_lines_of_many_ranks_go_from_messages_to_shapes(tmp_path, monkeypatch):
    from verify.logparse import tier1
    from verify.logparse.sources import file_blocks

    plain = _many_ranks(tmp_path).read_text().splitlines()
    log = tmp_path / "stamped.log"
    log.write_text("".join(f"2026-11-25T10:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}."
                           f"{i % 1000:03d}Z {line}\n" for i, line in enumerate(plain)))
    counter = tier1.Tier1Counter()
    for block in file_blocks(log):
        counter.scan(block, counter.lines + 1)
    assert counter._by_message and counter._by_class
    by_shape = parse_paths([log], instance="p5")
    monkeypatch.setattr(tier1, "CLASS_MIN_PIECES", 10 ** 9)
    by_message = parse_paths([log], instance="p5")
    assert {k: by_shape[k] for k in SUMMARY} == {k: by_message[k] for k in SUMMARY}
    assert _checks(by_shape) == _checks(by_message)


# -- GIN (issue 27): GPU-Initiated Networking lines are evidence of their own ----------
def test_an_assigned_gin_plugin_names_the_network_alone():
    """NCCL 2.28+ assigns a GIN plugin beside the NET plugin; with the NET lines cut
    away it still says which network ran (here NCCL's own IB GIN plugin: not EFA)."""
    result = parse("gin-assigned-ib.log")
    assert result["transport"] == "ib" and result["efa_used"] is False
    finding = result["findings"]["transport"]
    assert "GIN plugin" in finding["reason"] and finding["evidence"][0]["line"] == 1


def test_efa_gdaki_context_names_the_efa_provider():
    """aws-ofi-nccl's EFA GPU Direct Async context exists only over the efa provider."""
    result = parse("synthetic-gin-efa-gdaki.log", instance="p5en")
    assert result["transport"] == "libfabric" and result["efa_used"] is True
    lines = {e["line"] for e in result["findings"]["efa_used"]["evidence"]}
    assert {3, 4} <= lines
    assert check(result, "provider")["status"] == "pass"


def test_the_libfabric_gin_proxy_plugin_is_libfabric_but_names_no_provider(tmp_path):
    """'Assigned GIN plugin Libfabric' (proxy mode) is the plugin, not yet the efa
    provider: the plugin also runs over tcp;ofi_rxm and cxi."""
    result = parse_text(tmp_path, "h:1:1 [0] NCCL INFO Assigned GIN plugin Libfabric to comm\n")
    assert result["transport"] == "libfabric" and result["efa_used"] is None
