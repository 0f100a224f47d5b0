"""efa-verify preflight: recorded sysfs trees, real limits, and this machine's lack of NVML."""

import json
import os

import pytest

from tests import procs
from tests.procs import VERIFY
from verify.detect import Detection
from verify.preflight import GpuInventory, Host, check_efa, check_gpus, check_limits
from verify.profiles import resolve


def _sysfs(tmp_path, efa=4, uverbs=4, peermem=False, other=("mlx5_0",)):
    sys_root, dev = tmp_path / "sys", tmp_path / "dev"
    (sys_root / "bus/pci/drivers/efa").mkdir(parents=True)
    (sys_root / "bus/pci/drivers/mlx5_core").mkdir(parents=True)
    for i in range(efa):
        device = sys_root / f"class/infiniband/rdmap{i}s0/device"
        device.mkdir(parents=True)
        (device / "driver").symlink_to(sys_root / "bus/pci/drivers/efa")
    for name in other:
        device = sys_root / f"class/infiniband/{name}/device"
        device.mkdir(parents=True)
        (device / "driver").symlink_to(sys_root / "bus/pci/drivers/mlx5_core")
    (dev / "infiniband").mkdir(parents=True)
    for i in range(uverbs):
        (dev / f"infiniband/uverbs{i}").touch()
    if peermem:
        (sys_root / "module/nvidia_peermem").mkdir(parents=True)
    return Host(sys=sys_root, dev=dev, proc=tmp_path / "proc", shm=tmp_path)


def _det(name):
    return Detection(resolve(name), "test", name)


def _by_name(checks):
    return {c.name: c for c in checks}


def test_efa_devices_counted_against_the_profile(tmp_path):
    checks = _by_name(check_efa(_sysfs(tmp_path, efa=4, peermem=True), _det("p4d")))
    assert checks["efa_devices"].status == "pass" and "4 EFA devices" in checks["efa_devices"].message
    assert checks["gdr_support"].status == "pass"


def test_too_few_efa_devices_and_missing_uverbs(tmp_path):
    host = _sysfs(tmp_path, efa=2, uverbs=2)
    assert "p5.48xlarge has 32" in _by_name(check_efa(host, _det("p5")))["efa_devices"].message
    host = _sysfs(tmp_path / "b", efa=4, uverbs=1)
    message = _by_name(check_efa(host, _det("p4d")))["efa_devices"].message
    assert "1 /dev/infiniband/uverbs*" in message and "--device" in message


def test_no_efa_and_no_gdr_fail_with_fixes(tmp_path):
    checks = _by_name(check_efa(_sysfs(tmp_path, efa=0, uverbs=0), _det("p4d")))
    assert checks["efa_devices"].status == "fail" and "vpc.amazonaws.com/efa" in \
        checks["efa_devices"].message
    assert checks["gdr_support"].status == "fail" and "nvidia_peermem" in \
        checks["gdr_support"].message


def test_gdr_is_skipped_where_the_instance_has_none(tmp_path):
    checks = _by_name(check_efa(_sysfs(tmp_path, efa=1, uverbs=1), _det("g4dn.metal")))
    assert checks["gdr_support"].status == "skip"


def test_gpu_inventory_against_the_profile():
    good = GpuInventory(8, ["NVIDIA H100 80GB HBM3"] * 8, [79.6] * 8, "550.54", "12.4")
    checks = _by_name(check_gpus(good, _det("p5"), "12.4"))
    assert checks["gpus"].status == "pass" and checks["driver_cuda"].status == "pass"
    few = GpuInventory(4, ["NVIDIA H100 80GB HBM3"] * 4, [79.6] * 4, "535.1", "12.2")
    checks = _by_name(check_gpus(few, _det("p5"), "12.4"))
    assert "4 GPUs visible, p5.48xlarge has 8" in checks["gpus"].message
    assert checks["driver_cuda"].status == "fail" and "newer NVIDIA driver" in \
        checks["driver_cuda"].message


def test_no_nvml_is_a_failed_check_not_a_crash():
    checks = _by_name(check_gpus("NVML cannot start (Driver Not Loaded)", _det("p5"), "12.4"))
    assert checks["gpus"].status == "fail" and "--gpus all" in checks["gpus"].message


def test_limits_are_read_for_real(tmp_path):
    checks = _by_name(check_limits(Host(shm=tmp_path)))
    assert checks["memlock"].status in ("pass", "fail") and "memlock" in checks["memlock"].message
    assert checks["shm"].message.startswith("/dev/shm is")


def test_preflight_command_on_this_machine_fails_with_reasons(tmp_path):
    host = _sysfs(tmp_path, efa=0, uverbs=0)
    proc = procs.run([*VERIFY, "preflight", "--instance-type", "p4d", "--json",
                      "--sysfs", str(host.sys), "--devfs", str(host.dev)],
                     capture_output=True, text=True, timeout=120,
                     env={**os.environ, "EFAKIT_IMDS": "off"})
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["efa_devices"]["status"] == "fail" and checks["instance"]["status"] == "pass"
    assert result["tool"]["command"] == "preflight"


@pytest.mark.gpu
def test_preflight_reads_a_real_gpu():
    proc = procs.run([*VERIFY, "preflight", "--json"], capture_output=True, text=True,
                     env={**os.environ, "EFAKIT_IMDS": "off"})
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert "x NVIDIA" in checks["gpus"]["message"] or checks["gpus"]["status"] == "pass"
