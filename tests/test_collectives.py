"""The collectives efa-verify runs are one list, in data: run.yaml names their binaries,
bandwidth.yaml how their tables read; `run --test` and `sweep --test` offer exactly
those (issue 27: broadcast, which hung on aws-ofi-nccl 1.18 while all_reduce passed)."""

from tests import procs
from tests.procs import VERIFY
from verify.bandwidth import COLLECTIVES, derived_floor, factor
from verify.profiles import resolve
from verify.tables import load_table


def test_run_and_bandwidth_tables_name_the_same_collectives():
    assert tuple(load_table("run")["benchmarks"]) == COLLECTIVES
    assert "broadcast" in COLLECTIVES
    assert all(name.endswith("_perf") for name in load_table("run")["benchmarks"].values())


def test_broadcast_has_a_derived_floor_and_nccl_tests_factor():
    assert factor("broadcast", 16) == 1.0  # nccl-tests BroadcastGetBw: busbw = algbw
    assert factor("all_reduce", 16) == 2 * 15 / 16
    floor = derived_floor(resolve("p4d"), "broadcast", 1 << 30, 16, 2)
    assert 0 < floor < 50  # below p4d's 400 Gbps EFA line rate (50 GB/s)


def test_run_and_sweep_offer_broadcast():
    for command in ("run", "sweep"):
        done = procs.run([*VERIFY, command, "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "broadcast" in done.stdout, command
