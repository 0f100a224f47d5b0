"""Host lists for `efa-verify run` and the EFA counter evidence, without MPI."""

from __future__ import annotations

import json

import pytest

from tests.test_run import efa_sysfs
from verify.run import hosts
from verify.run.counters import counters_check, snapshot


def test_hosts_from_every_source(tmp_path):
    assert hosts.parse_hosts("a:8,b") == (hosts.Host("a", 8), hosts.Host("b"))
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# cluster\nnode-1 slots=8 max_slots=8\nnode-2:4\n\n")
    assert hosts.read_hostfile(str(hostfile)) == (hosts.Host("node-1", 8), hosts.Host("node-2", 4))
    config = tmp_path / "resourceconfig.json"
    config.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-2", "algo-1"],
                                  "network_interface_name": "eth0"}))
    plan = hosts.resolve_hosts(None, None, {}, str(config))
    assert plan.names() == ["algo-1", "algo-2"] and plan.source.startswith("sagemaker")
    slurm = {"SLURM_JOB_NODELIST": "p5-[001-003,010],login", "SLURM_NTASKS_PER_NODE": "8(x5)"}
    plan = hosts.resolve_hosts(None, None, slurm, str(tmp_path / "absent.json"))
    assert plan.names() == ["p5-001", "p5-002", "p5-003", "p5-010", "login"]
    assert {h.slots for h in plan.hosts} == {8}
    assert hosts.resolve_hosts(None, None, {}, str(tmp_path / "absent")).source == \
        "this host only"


@pytest.mark.parametrize("text, error", [
    ("node-1 cores=4", "unknown hostfile field 'cores=4'"),
    ("node-1 slots=0", "slots must be a positive integer"),
    ("bad/host", "is not a host name"),
])
def test_bad_hostfiles_name_the_line(tmp_path, text, error):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text(f"ok-host\n{text}\n")
    with pytest.raises(hosts.HostsError, match=f"{hostfile}:2: .*{error}"):
        hosts.read_hostfile(str(hostfile))


def test_bad_slurm_nodelist_is_an_error():
    with pytest.raises(hosts.HostsError, match="SLURM_JOB_NODELIST: cannot expand"):
        hosts.from_slurm({"SLURM_JOB_NODELIST": "p5-[a-c]"})


def _bumped(sysfs, device: str, counter: str, by: int) -> dict:
    path = sysfs / "class" / "infiniband" / device / "ports" / "1" / "hw_counters" / counter
    path.write_text(str(int(path.read_text()) + by))
    return snapshot(sysfs)


def test_counters_only_efa_devices_and_trouble_is_reported(tmp_path):
    sysfs = efa_sysfs(tmp_path / "sys")
    before = snapshot(sysfs)
    assert before["drivers"] == {"mlx5_0": "mlx5_core", "rdmap16s27": "efa",
                                 "rdmap32s27": "efa"}
    assert before["devices"]["rdmap16s27/1"]["lifespan"] == 12
    _bumped(sysfs, "mlx5_0", "tx_bytes", 10**9)
    _bumped(sysfs, "rdmap16s27", "rdma_write_bytes", 4096)
    after = _bumped(sysfs, "rdmap16s27", "unresponsive_remote_events", 2)
    check, summary = counters_check({"h1": before}, {"h1": after}, 2, tmp_path / "c.jsonl")
    # RDMA bytes alone are not tx/rx traffic: the idle host fails, mlx5's gigabyte is ignored
    assert check.status == "fail" and "moved no data on h1" in check.message
    assert "unresponsive_remote_events+2" in check.message
    assert summary["h1"]["rdmap16s27/1"]["rdma_bytes"] == 4096
    assert "mlx5_0/1" not in summary["h1"]


def test_counters_single_node_missing_host_and_no_efa(tmp_path):
    sysfs = efa_sysfs(tmp_path / "sys")
    snap = snapshot(sysfs)
    out = tmp_path / "c.jsonl"
    assert counters_check({"h": snap}, {"h": snap}, 1, out)[0].status == "skip"
    assert counters_check({"h": snap, "g": snap}, {"h": snap}, 2, out)[0].status == "unknown"
    plain = snapshot(tmp_path / "nothing")
    assert counters_check({"h": plain}, {"h": plain}, 2, out)[0].status == "skip"


def test_torch_engine_table_reads_like_nccl_tests(tmp_path):
    from tests.parsehelp import parse_text
    from verify import torch_allreduce as ta

    sizes, _, _ = ta.sweep_sizes("quick")
    text = ta.HEADER + "".join(ta.row_text(s, s / 100e9, 16, 0) for s in sizes) + \
        "# Out of bounds values : 0 OK\n# Avg bus bandwidth    : 187.5000\n"
    result = parse_text(tmp_path, text, instance="p5")
    test = result["tests"][0]
    assert [r["size"] for r in test["rows"]] == sizes and test["complete"]
    # 100 GB/s algbw over 16 ranks is 187.5 GB/s bus bandwidth, in-place only
    assert test["rows"][-1]["ip"]["busbw_GBps"] == 187.5
    assert test["rows"][-1]["oop"]["busbw_GBps"] is None
    assert result["busbw_avg_GBps"] == 187.5 and result["wrong_values"] == 0
