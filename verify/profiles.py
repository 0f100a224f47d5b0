"""Resolve `--instance-type` against the instance profile table.

Every command accepts `p5`, `p5.48xlarge` and `ml.p5.48xlarge` for the same
profile; this module is the only place that knows how.
"""

from __future__ import annotations

from dataclasses import dataclass

from verify.boundary.values import shown
from verify.tables import TableError, load_table


class UnknownInstance(ValueError):
    """An --instance-type that no profile matches."""


@dataclass(frozen=True)
class Profile:
    """One instance type's facts, as the verdicts and env rules need them."""

    name: str
    sagemaker_name: str | None
    gpu_model: str
    gpu_count: int
    gpu_memory_gib: int
    arch: str
    efa_devices: int | None  # None: unknown (instances.yaml says why)
    rdma_read: bool | None
    gdr_capable: bool
    efa_gbps: int | None = 0  # None: unknown (instances.yaml says why)
    # One GPU's NVLink (or PCIe) bandwidth per direction, GB/s: with efa_gbps, what
    # bounds the bus bandwidth a table on this instance can show (bandwidth.ceiling).
    gpu_link_gbps: float = 0
    source: str = ""
    # Whether NCCL should use GDR on sends too (GDR read), and why: True fails a job
    # whose [send] connections lack /GDRDMA; None where GDR is not judged.
    gdr_both_directions: bool | None = None
    gdr_both_reason: str = ""
    unknown: tuple[tuple[str, str], ...] = ()  # (fact, why it is unknown)

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    def facts(self) -> dict[str, object]:
        """The instance facts env rules may test."""
        return {"rdma_read": self.rdma_read, "gdr_capable": self.gdr_capable, "instance": self.name}


def _gdr_both(name: str, row: dict) -> tuple[bool | None, str]:
    """The row's gdr_both_directions, checked: {expected: true|false|null, reason,
    source}, and not expected where the instance has no GDR at all."""
    entry = row.get("gdr_both_directions")
    where = f"instances.yaml: {name}: gdr_both_directions"
    if not isinstance(entry, dict) or set(entry) != {"expected", "reason", "source"}:
        raise TableError(f"{where} must be {{expected, reason, source}}")
    expected = entry["expected"]
    if expected not in (True, False, None):
        raise TableError(f"{where}: expected must be true, false or null, not {expected!r}")
    if not all(isinstance(entry[k], str) and entry[k].strip() for k in ("reason", "source")):
        raise TableError(f"{where}: reason and source must be non-empty text")
    if expected is not None and not row.get("gdr_capable"):
        raise TableError(f"{where}: expected must be null where gdr_capable is false")
    return expected, entry["reason"]


def _count(name: str, row: dict, key: str) -> int | None:
    """An integer fact, or None where the row says why nobody knows it."""
    value = row.get(key)
    if value is None:
        if not str((row.get("unknown") or {}).get(key) or "").strip():
            raise TableError(f"instances.yaml: {name}: {key} is null without a reason "
                             f"under unknown.{key}")
        return None
    return int(value)


def _build(name: str, row: dict) -> Profile:
    gpu = row["gpu"]
    both, both_reason = _gdr_both(name, row)
    return Profile(
        name=name,
        sagemaker_name=row.get("sagemaker_name"),
        gpu_model=gpu["model"],
        gpu_count=int(gpu["count"]),
        gpu_memory_gib=int(gpu["memory_GiB"]),
        arch=gpu["arch"],
        efa_devices=_count(name, row, "efa_devices"),
        rdma_read=row.get("rdma_read"),
        gdr_capable=bool(row["gdr_capable"]),
        efa_gbps=_count(name, row, "efa_gbps"),
        gpu_link_gbps=float(gpu["link_GBps"]),
        source=row.get("source", ""),
        gdr_both_directions=both,
        gdr_both_reason=both_reason,
        unknown=tuple((row.get("unknown") or {}).items()),
    )


def all_profiles() -> dict[str, Profile]:
    """Every profile by canonical EC2 name."""
    table = load_table("instances")
    return {name: _build(name, row) for name, row in table["profiles"].items()}


def known_archs() -> set[str]:
    return {p.arch for p in all_profiles().values()}


def resolve(text: str) -> Profile:
    """Map `p5`, `p5.48xlarge` or `ml.p5.48xlarge` (any case) to its profile."""
    if not text.isprintable():  # `p5\n`: launch refuses it, env and preflight must too
        raise UnknownInstance(f"unknown instance type {shown(text)} (a control character)")
    wanted = text.strip().lower()
    if wanted.startswith("ml."):
        wanted = wanted[3:]
    profiles = all_profiles()
    if wanted in profiles:
        return profiles[wanted]
    family = [p for p in profiles.values() if p.family == wanted]
    if len(family) == 1:
        return family[0]
    names = ", ".join(sorted(profiles))
    if len(family) > 1:
        raise UnknownInstance(
            f"instance type {shown(text)} is ambiguous: one of {', '.join(p.name for p in family)}"
        )
    raise UnknownInstance(f"unknown instance type {shown(text)}; known: {names}")


def candidates_for_gpu(model: str) -> list[Profile]:
    """Profiles whose GPU matches an NVML model name (prefix/substring match)."""
    table = load_table("instances")
    profiles = all_profiles()
    hits: list[Profile] = []
    for key, names in table.get("gpu_models", {}).items():
        if key.lower() in model.lower():
            hits.extend(profiles[n] for n in names)
    return hits
