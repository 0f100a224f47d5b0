"""Bandwidth judged on every EFA instance at any node count: published, derived, baseline.

Corpus logs are the public ones in ../shared/corpus/nccl-logs (LABELS.json names
their sources).  Tables marked SYNTHETIC are built with nccl-tests' own busbw
factors (src/*.cu GetBw) where no public log of that shape was found.
"""

import json
import os
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import procs
from tests.conftest import CORPUS, ROOT
from tests.parsehelp import check, parse_paths, parse_text
from tests.procs import VERIFY
from tests.test_hosts_counters import _bumped
from tests.test_run import efa_sysfs
from verify.bandwidth import (
    COLLECTIVES,
    derived_floor,
    human_size,
    reference_rows,
    shape_of,
    table,
)
from verify.profiles import all_profiles, resolve
from verify.run.counters import counters_check, snapshot
from verify.run.outliers import low_outliers


def corpus(prefix: str):
    return next(CORPUS.glob(f"{prefix}-*.log"))


def verify(*args: str) -> tuple[int, dict, str]:
    proc = procs.run([*VERIFY, "parse", *args, "--json"], capture_output=True,
                          text=True)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else {}, proc.stderr


# -- the flagship p4d cases -----------------------------------------------------------
@pytest.mark.parametrize("prefix,busbw", [("001", 32.84), ("002", 43.81)])
def test_healthy_p4d_two_node_eks_runs_pass(prefix, busbw):
    code, result, _ = verify(str(corpus(prefix)), "--instance-type", "p4d",
                             "--expect-nodes", "2")
    assert code == 0 and result["verdict"] == "pass", result["verdict_reason"]
    derived = check(result, "bandwidth_derived")
    assert derived["status"] == "pass" and derived["message"].startswith("derived floor")
    assert f"{busbw}" in derived["message"] and "2 nodes" in derived["message"]
    assert check(result, "bandwidth")["status"] == "skip"  # no published p4d expectation


def test_p4d_socket_fallback_log_fails():
    code, result, _ = verify(str(corpus("006")), "--instance-type", "p4d", "--expect-nodes", "2")
    assert code == 1 and result["verdict"] == "fail" and result["transport"] == "socket"


def _all_reduce_rows(ranks: int, sizes_busbw: list[tuple[int, float]]) -> str:
    """SYNTHETIC nccl-tests all_reduce rows (new format), algbw = busbw * n / 2(n-1)."""
    factor = 2 * (ranks - 1) / ranks
    lines = ["#       size         count      type   redop    root     time   algbw   busbw "
             "#wrong     time   algbw   busbw #wrong",
             "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)"
             "            (us)  (GB/s)  (GB/s)"]
    for size, busbw in sizes_busbw:
        algbw = busbw / factor
        time_us = size / (algbw * 1e3)
        lines.append(f"{size:>12} {size // 4:>13}     float     sum      -1 {time_us:8.1f} "
                     f"{algbw:7.2f} {busbw:7.2f}      0 {time_us:8.1f} {algbw:7.2f} "
                     f"{busbw:7.2f}      0")
    return "\n".join(lines) + "\n# Out of bounds values : 0 OK\n# Avg bus bandwidth    : 1.0\n"


SOCKET_SPEED = [(1 << 26, 4.1), (1 << 28, 5.2), (1 << 30, 5.6)]


def test_p4d_at_socket_speed_fails_on_bandwidth_without_channel_lines(tmp_path):
    # SYNTHETIC: a 2-node x 8-GPU p4d table at Socket-like speed (~5 GB/s), with no
    # NCCL line at all, so transport and GDR are unknown: only bandwidth can tell.
    log = tmp_path / "p4d-socket-speed.log"
    log.write_text(_all_reduce_rows(16, SOCKET_SPEED))
    code, result, _ = verify(str(log), "--instance-type", "p4d", "--expect-nodes", "2")
    derived = check(result, "bandwidth_derived")
    assert code == 1 and result["verdict"] == "fail"
    assert derived["status"] == "fail" and "1 GiB 5.6 < 19.9" in derived["message"]
    assert "64 MiB" in derived["message"] and derived["evidence"][0]["line"] == 3


def test_node_count_is_never_a_question_mark(tmp_path):
    log = tmp_path / "table.log"
    log.write_text(_all_reduce_rows(16, [(1 << 30, 300.0)]))
    result = parse_paths([log], instance="p5")
    for name in ("bandwidth", "bandwidth_derived"):
        assert check(result, name)["status"] == "unknown"
        assert "--expect-nodes" in check(result, name)["message"]
    assert "?" not in json.dumps([c["message"] for c in result["checks"]])
    told = parse_paths([log], instance="p5", expect_nodes=2)
    assert check(told, "bandwidth")["status"] == "pass"
    assert "all_reduce on 16 ranks, 2 nodes" in check(told, "bandwidth")["message"]


@pytest.mark.parametrize("prefix", ["004", "048"])
def test_published_p5_tables_pass_their_own_expectation(prefix):
    result = parse_paths([corpus(prefix)], instance="p5", expect_nodes=2)
    assert check(result, "bandwidth")["status"] == "pass"
    assert check(result, "bandwidth_derived")["status"] == "pass"


# -- the model ----------------------------------------------------------------------
def test_every_efa_instance_has_a_derived_floor_at_every_scale():
    for profile in all_profiles().values():
        for nodes in (2, 3, 16, 128, 1000):
            for collective in COLLECTIVES:
                floor = derived_floor(profile, collective, 1 << 30, nodes * 8, nodes)
                if profile.efa_gbps:
                    assert floor and floor > 0, (profile.name, nodes, collective)
                else:
                    assert floor is None
        assert derived_floor(profile, "all_reduce", 1 << 30, 8, 1) is None  # one node


def test_derived_floor_sits_below_every_public_measurement():
    for profile in all_profiles().values():
        for row in reference_rows(profile):
            floor = derived_floor(profile, row["collective"], row["size_bytes"], row["ranks"],
                                  row["nodes"])
            assert floor < row["busbw_GBps"] * 0.75, (row["source"], floor)


def test_derived_floor_falls_slowly_with_nodes_and_size():
    p4d = resolve("p4d")
    at = [derived_floor(p4d, "all_reduce", 1 << 30, n * 8, n) for n in (2, 4, 16, 64)]
    assert at == sorted(at, reverse=True) and at[-1] > 0.8 * at[0]
    sizes = [derived_floor(p4d, "all_reduce", s, 16, 2) for s in (1 << 20, 1 << 26, 1 << 30)]
    assert sizes == sorted(sizes)


def test_published_rows_carry_provenance():
    for row in table()["published"]:
        assert row["source"].strip() and row["nodes"] >= 2 and row["size_bytes"] > 0
        if row["use"] == "expectation":
            assert row["ranks"] == 8 * row["nodes"]


# -- collectives ----------------------------------------------------------------------
def _row(size, algbw, busbw, redop="sum"):
    side = {"time_us": 1.0, "algbw_GBps": algbw, "busbw_GBps": busbw, "wrong": 0, "error": None}
    return {"size": size, "redop": redop, "line": 1, "oop": side, "ip": dict(side)}


@pytest.mark.parametrize("redop,factor,collective", [
    ("sum", 2 * 15 / 16, "all_reduce"),
    ("sum", 15 / 16, "reduce_scatter"),
    ("none", 15 / 16, "all_gather or alltoall"),
])
def test_collective_and_ranks_from_nccl_tests_factors(redop, factor, collective):
    shape = shape_of([_row(1 << 30, 20.0, 20.0 * factor, redop)], None)
    assert (shape.collective, shape.ranks) == (collective, 16)
    if collective.startswith("all_gather"):
        assert shape_of([_row(1 << 30, 20.0, 18.75, redop)], None, "alltoall").collective == \
            "alltoall"


def test_single_rank_table_is_one_rank():
    assert shape_of([_row(1 << 30, 300.0, 0.0)], None).ranks == 1


def test_every_collective_is_judged(tmp_path):
    p4d = resolve("p4d")
    # SYNTHETIC reduce_scatter table well above the floor, then an alltoall one below it.
    lines = _all_reduce_rows(16, [(1 << 30, 30.0)])
    reduce_scatter = lines.replace(f"{30 / (2 * 15 / 16):7.2f}", f"{30 / (15 / 16):7.2f}")
    result = parse_text(tmp_path, reduce_scatter, instance="p4d", expect_nodes=2)
    derived = check(result, "bandwidth_derived")
    assert derived["status"] == "pass" and derived["message"].count("reduce_scatter") == 1
    floor = derived_floor(p4d, "alltoall", 1 << 30, 16, 2)
    slow = _all_reduce_rows(16, [(1 << 30, floor / 2)]).replace("  sum  ", " none  ")
    slow = slow.replace(f"{floor / 2 / (2 * 15 / 16):7.2f}", f"{floor / 2 / (15 / 16):7.2f}")
    result = parse_text(tmp_path, slow, instance="p4d", expect_nodes=2, collective="alltoall")
    derived = check(result, "bandwidth_derived")
    assert derived["status"] == "fail" and "alltoall on 16 ranks" in derived["message"]


# -- baselines ------------------------------------------------------------------------
def test_baseline_record_and_compare_name_the_short_sizes(tmp_path):
    out = tmp_path / "r.json"
    code, _, _ = verify(str(corpus("002")), "--instance-type", "p4d", "--expect-nodes", "2",
                        "-o", str(out))
    assert code == 0
    rec = procs.run([*VERIFY, "baseline", "record", str(out), "--name", "site-p4d",
                          "--dir", str(tmp_path / "bl")], capture_output=True, text=True)
    assert rec.returncode == 0 and rec.stdout.strip().endswith("site-p4d.json")
    stored = json.loads((tmp_path / "bl" / "site-p4d.json").read_text())
    assert stored["curves"][0]["collective"] == "all_reduce" and stored["curves"][0]["nodes"] == 2
    env_args = ["--instance-type", "p4d", "--expect-nodes", "2", "--baseline",
                str(tmp_path / "bl" / "site-p4d.json")]
    code, same, _ = verify(str(corpus("002")), *env_args)
    assert code == 0 and check(same, "bandwidth_baseline")["status"] == "pass"
    code, older, _ = verify(str(corpus("001")), *env_args)  # NCCL 2.8: slower than 2.9
    base = check(older, "bandwidth_baseline")
    assert code == 1 and base["status"] == "fail"
    assert "1 GiB 32.84 < 42.48" in base["message"] and "64 MiB" not in base["message"]
    code, lenient, _ = verify(str(corpus("001")), *env_args, "--baseline-tolerance", "0.5")
    assert code == 0 and check(lenient, "bandwidth_baseline")["status"] == "pass"


@pytest.mark.parametrize("args,message", [
    (["--name", "bad/name"], "letters, digits"),
    (["--name", "ok"], "only a passing run"),
])
def test_baseline_record_refuses(tmp_path, args, message):
    out = tmp_path / "r.json"
    verify(str(corpus("006")), "--instance-type", "p4d", "-o", str(out))
    proc = procs.run([*VERIFY, "baseline", "record", str(out), *args, "--dir",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1


def test_unknown_baseline_is_exit_2(tmp_path):
    proc = procs.run([*VERIFY, "parse", str(corpus("001")), "--baseline", "nope"],
                          capture_output=True, text=True,
                          env={**os.environ, "EFA_VERIFY_BASELINES": str(tmp_path)})
    assert proc.returncode == 2 and "no baseline named 'nope'" in proc.stderr


# -- outliers -------------------------------------------------------------------------
def test_low_outliers_name_the_slow_node_only():
    healthy = {f"node-{i}": 40.0 + (i % 3) * 0.4 for i in range(15)}
    assert low_outliers(healthy) == []
    slow = low_outliers({**healthy, "node-15": 12.0})
    assert [o.name for o in slow] == ["node-15"]
    assert "30% of the median" in slow[0].describe()
    assert low_outliers({"a": 1.0, "b": 40.0}) == []  # two values: no peers to judge by
    assert low_outliers({**{f"n{i}": 40.0 for i in range(5)}, "x": 39.9}) == []  # noise


def test_counters_name_a_host_far_below_its_peers(tmp_path):
    befores, afters = {}, {}
    for i in range(4):
        sysfs = efa_sysfs(tmp_path / f"sys{i}")
        befores[f"h{i}"] = snapshot(sysfs)
        afters[f"h{i}"] = _bumped(sysfs, "rdmap16s27", "tx_bytes",
                                  10**8 if i == 3 else 10**10)
    result, _ = counters_check(befores, afters, 4, tmp_path / "c.jsonl")
    assert result.status == "fail" and result.message.startswith("EFA traffic far below")
    assert "h3: 100,000,000 B, 1% of the median" in result.message and "h0" not in result.message


# -- plot -----------------------------------------------------------------------------
def test_sizes_read_in_binary_units():
    assert [human_size(s) for s in (512, 1024, 65536, 1 << 20, 3 << 29, 1 << 30)] == \
        ["512 B", "1 KiB", "64 KiB", "1 MiB", "1.5 GiB", "1 GiB"]


def test_plot_draws_the_expected_curve_and_titles_the_verdict(tmp_path):
    pytest.importorskip("matplotlib")
    from buildkit.plot import expected_curves, plot_busbw, title

    code, result, _ = verify(str(corpus("001")), "--instance-type", "p4d", "--expect-nodes", "2")
    curves = expected_curves(result)
    assert [c["kind"] for c in curves] == ["derived"] and len(curves[0]["points"]) > 5
    assert title(result, curves) == "p4d.24xlarge, 2 nodes, 16 ranks, all_reduce: PASS"
    png = plot_busbw(result, tmp_path / "bw.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_with_expected_curves_match_the_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "verify" / "schema" / "result.schema.json").read_text())
    for prefix in ("001", "004"):
        result = parse_paths([corpus(prefix)], instance="p5", expect_nodes=2)
        assert any(c.get("detail") for c in result["checks"])
        jsonschema.validate(result, schema)


def test_baseline_record_into_a_file_says_it_is_no_directory(tmp_path):
    """attack-1 W-3: `--dir FILE` said 'cannot write baseline x: File exists'."""
    out = tmp_path / "r.json"
    code, _, _ = verify(str(corpus("002")), "--instance-type", "p4d", "--expect-nodes", "2",
                        "-o", str(out))
    assert code == 0
    (tmp_path / "FILE").write_text("mine\n")
    proc = procs.run([*VERIFY, "baseline", "record", str(out), "--name", "b", "--dir",
                      str(tmp_path / "FILE")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"--dir {tmp_path / 'FILE'}: not a directory" in proc.stderr
    assert (tmp_path / "FILE").read_text() == "mine\n"


# -- numbers in a log are ASCII (attack-2 SA-5) ----------------------------------------
# SYNTHETIC: a 2-node p5 run whose 1 GiB busbw (107 GB/s) fails the p5 expectation.
_FAILING_P5 = """\
#  Rank  0 Group  0 Pid   1234 on      host1 device  0 [0x10] NVIDIA H100
#  Rank  1 Group  0 Pid   2234 on      host2 device  0 [0x10] NVIDIA H100
host1:1234:1234 [0] NCCL INFO NCCL version 2.21.5+cuda12.4
host1:1234:1234 [0] NCCL INFO NET/OFI Selected Provider is efa (found 32 nics)
host1:1234:1234 [0] NCCL INFO Using network Libfabric
host1:1234:1250 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] via NET/Libfabric/0/GDRDMA
host1:1234:1250 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[0] [send] via NET/Libfabric/0/GDRDMA
host2:2234:2234 [0] NCCL INFO NET/OFI Selected Provider is efa (found 32 nics)
host2:2234:2234 [0] NCCL INFO Using network Libfabric
host2:2234:2250 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[0] [receive] via NET/Libfabric/0/GDRDMA
host2:2234:2250 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [send] via NET/Libfabric/0/GDRDMA
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
    67108864      16777216     float     sum      -1   1000.0   67.11   67.11      0   1000.0   67.11   67.11      0
  1073741824     268435456     float     sum      -1  10000.0  107.37  107.37      0  10000.0  107.37  107.37      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 87.24
"""
# Unicode decimal digits that float() and int() and a str regex's \\d read as numbers
_FOREIGN_DIGITS = "٠١٢٣٤٥٦٧٨٩۴०৪๔０４𝟒"


def test_unicode_digits_in_a_failing_table_are_not_400_gbps(tmp_path):
    assert parse_text(tmp_path, _FAILING_P5, instance="p5")["verdict"] == "fail"
    ascii_400 = _FAILING_P5.replace("107.37", "400.00")
    assert parse_text(tmp_path, ascii_400, instance="p5")["verdict"] == "pass"
    arabic_400 = _FAILING_P5.replace("107.37", "٤٠٠.٠٠")
    assert parse_text(tmp_path, arabic_400, instance="p5")["verdict"] != "pass"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_non_ascii_digit_anywhere_never_turns_a_failing_table_to_pass(tmp_path, data):
    table = _FAILING_P5.index("#       size")  # the table's rows and summary lines
    positions = [i for i, c in enumerate(_FAILING_P5) if c in "0123456789" and i > table]
    chosen = data.draw(st.lists(st.sampled_from(positions), min_size=1, max_size=8, unique=True))
    text = list(_FAILING_P5)
    for i in chosen:
        text[i] = data.draw(st.sampled_from([d for d in _FOREIGN_DIGITS
                                             if unicodedata.digit(d) == int(text[i])] or
                                            list(_FOREIGN_DIGITS)))
    assert parse_text(tmp_path, "".join(text), instance="p5")["verdict"] != "pass"
