"""`efa-verify preflight`: on the GPU host, before spending cluster time.

GPUs through NVML, EFA devices and GPUDirect support through sysfs, and the
limits NCCL needs, each against the instance profile and each with the fix
when it fails.  No NVML or no GPU is a failed check, never a crash.  The
sysfs/dev roots are parameters so recorded trees can be checked in tests.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from verify.checks import Check, Evidence
from verify.detect import Detection
from verify.versions import parse_version

SHM_MIN_BYTES = 1 << 30  # NCCL's SHM transport needs far more than Docker's 64 MB default


@dataclass
class Host:
    sys: Path = Path("/sys")
    dev: Path = Path("/dev")
    proc: Path = Path("/proc")
    shm: Path = Path("/dev/shm")


@dataclass
class GpuInventory:
    count: int
    models: list[str]
    memory_gib: list[float]
    driver: str
    cuda: str  # the driver's CUDA version, e.g. "12.4"


def nvml_inventory() -> GpuInventory | str:
    """The GPUs through NVML, or why they cannot be read."""
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"NVML cannot start ({exc}): no NVIDIA driver visible in this container"
    try:
        count = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        models = [_text(pynvml.nvmlDeviceGetName(h)) for h in handles]
        memory = [pynvml.nvmlDeviceGetMemoryInfo(h).total / (1 << 30) for h in handles]
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda_int = pynvml.nvmlSystemGetCudaDriverVersion()
        return GpuInventory(count, models, memory, driver,
                            f"{cuda_int // 1000}.{(cuda_int % 1000) // 10}")
    except pynvml.NVMLError as exc:
        return f"NVML query failed: {exc}"
    finally:
        pynvml.nvmlShutdown()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_gpus(inventory: GpuInventory | str, detection: Detection,
               image_cuda: str | None) -> list[Check]:
    profile = detection.profile
    if isinstance(inventory, str):
        return [Check("gpus", "fail", True, f"no GPU inventory: {inventory}. Fix: run the "
                      "container with the NVIDIA runtime (docker --gpus all; EKS: the NVIDIA "
                      "device plugin)"),
                Check("driver_cuda", "skip", True, "no driver to compare")]
    ev = [Evidence("nvml", 1, None, f"{inventory.count} x {m} ({g:.0f} GiB)")
          for m, g in zip(inventory.models[:1], inventory.memory_gib[:1], strict=False)]
    problems = []
    if profile is not None:
        if inventory.count != profile.gpu_count:
            problems.append(f"{inventory.count} GPUs visible, {profile.name} has "
                            f"{profile.gpu_count}")
        if not all(profile.gpu_model.lower() in m.lower() for m in inventory.models):
            problems.append(f"GPU model {inventory.models[0]!r} is not {profile.name}'s "
                            f"{profile.gpu_model!r}")
    checks = [Check("gpus", "fail" if problems else "pass", True,
                    "; ".join(problems) + ". Fix: expose every GPU (--gpus all) and check "
                    "--instance-type" if problems else
                    f"{inventory.count} x {inventory.models[0] if inventory.models else '?'}, "
                    f"driver {inventory.driver}", ev)]
    if image_cuda is None:
        checks.append(Check("driver_cuda", "skip", True, "the image has no CUDA"))
    else:
        ok = parse_version(inventory.cuda) >= parse_version(image_cuda)
        checks.append(Check("driver_cuda", "pass" if ok else "fail", True,
                            f"driver supports CUDA {inventory.cuda}, image needs {image_cuda}"
                            + ("" if ok else ". Fix: a newer NVIDIA driver (or an image built "
                               "for an older CUDA)"), ev))
    return checks


def efa_devices(host: Host) -> list[Path]:
    out = []
    for device in sorted((host.sys / "class" / "infiniband").glob("*")):
        driver = device / "device" / "driver"
        if driver.exists() and os.path.basename(os.path.realpath(driver)) == "efa":
            out.append(device)
    return out


def check_efa(host: Host, detection: Detection) -> list[Check]:
    profile = detection.profile
    devices = efa_devices(host)
    uverbs = sorted(host.dev.glob("infiniband/uverbs*"))
    ev = [Evidence(str(d), 1, None, "driver efa") for d in devices[:4]]
    expected = profile.efa_devices if profile else None
    if not devices:
        status, message = "fail", ("no EFA device in /sys/class/infiniband (driver efa). Fix: "
                                   "an EFA-enabled instance with the EFA interfaces attached; "
                                   "in a container, pass /dev/infiniband/uverbs* (EKS: request "
                                   "vpc.amazonaws.com/efa)")
    elif expected is not None and len(devices) != expected:
        status, message = "fail", (f"{len(devices)} EFA devices, {profile.name} has {expected}. "
                                   "Fix: attach every EFA interface (launch template / "
                                   "SageMaker does it by itself)")
    elif len(uverbs) < len(devices):
        status, message = "fail", (f"{len(devices)} EFA devices but {len(uverbs)} "
                                   "/dev/infiniband/uverbs* in the container. Fix: pass every "
                                   "uverbs device (docker --device)")
    else:
        status, message = "pass", f"{len(devices)} EFA devices, {len(uverbs)} uverbs"
    checks = [Check("efa_devices", status, True, message, ev)]
    if profile is not None and not profile.gdr_capable:
        checks.append(Check("gdr_support", "skip", True, f"{profile.name} has no GPUDirect RDMA"))
        return checks
    peermem = (host.sys / "module" / "nvidia_peermem").exists() or \
        "nvidia_peermem" in _read(host.proc / "modules")
    p2p = [d for d in devices if "nvidia" in _read(d / "device" / "p2p").lower()]
    if peermem or p2p:
        how = "nvidia_peermem loaded" if peermem else f"EFA p2p provider {p2p[0].name}"
        checks.append(Check("gdr_support", "pass", True, f"GPUDirect RDMA possible ({how})"))
    else:
        checks.append(Check("gdr_support", "fail", True,
                            "no nvidia_peermem module and no NVIDIA p2p provider on an EFA "
                            "device: GPUDirect RDMA is impossible and aws-ofi-nccl refuses to "
                            "start on p4d/p5. Fix: load nvidia_peermem on the host (or use a "
                            "driver and kernel with dma-buf)"))
    return checks


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def check_limits(host: Host) -> list[Check]:
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    unlimited = soft == resource.RLIM_INFINITY
    checks = [Check("memlock", "pass" if unlimited else "fail", True,
                    "memlock unlimited" if unlimited else
                    f"memlock limit {soft} bytes: EFA memory registration fails (ENOMEM). "
                    "Fix: docker --ulimit memlock=-1:-1 (EKS/Slurm: raise the job's limit)")]
    try:
        stat = os.statvfs(host.shm)
        size = stat.f_frsize * stat.f_blocks
    except OSError:
        size = 0
    checks.append(Check("shm", "pass" if size >= SHM_MIN_BYTES else "fail", True,
                        f"/dev/shm is {size / (1 << 20):.0f} MiB"
                        + ("" if size >= SHM_MIN_BYTES else
                           f" (< {SHM_MIN_BYTES >> 20} MiB). Fix: docker --shm-size=8g or "
                           "--ipc=host; EKS/SageMaker: a Memory-medium emptyDir")))
    return checks


def preflight_checks(host: Host, detection: Detection, image_cuda: str | None,
                     inventory: GpuInventory | str | None = None) -> list[Check]:
    inventory = nvml_inventory() if inventory is None else inventory
    source = Check("instance", "pass" if detection.profile else "unknown", True,
                   f"instance {detection.profile.name} (from {detection.source})"
                   if detection.profile else f"instance not known ({detection.detail}): "
                   "pass --instance-type")
    return [source] + check_gpus(inventory, detection, image_cuda) + check_efa(host, detection) \
        + check_limits(host)
