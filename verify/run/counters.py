"""EFA hardware counters: evidence that does not depend on log wording.

Each EFA device exposes byte counters in sysfs.  `efa-verify run` reads them on
every host before and after the benchmark; if NCCL really moved data over EFA
they grew, whatever the logs say, and if they did not the logs are wrong.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from verify.checks import Check, Evidence
from verify.run.outliers import low_outliers
from verify.tables import load_table

Snapshot = dict[str, dict[str, int]]  # "device/port" -> counter -> value


def groups() -> dict[str, list[str]]:
    return load_table("run")["hw_counters"]


def _driver(device: Path) -> str | None:
    link = device / "device" / "driver"
    try:
        return Path(link.resolve(strict=True)).name
    except OSError:
        return None


def snapshot(sysfs: Path) -> dict:
    """This host's counters: {host, devices: {dev/port: {name: value}}, drivers}."""
    devices: Snapshot = {}
    drivers: dict[str, str | None] = {}
    root = sysfs / "class" / "infiniband"
    for device in sorted(root.glob("*")) if root.is_dir() else []:
        drivers[device.name] = _driver(device)
        for counters in sorted(device.glob("ports/*/hw_counters")):
            values = {}
            for item in sorted(counters.iterdir()):
                try:
                    values[item.name] = int(item.read_text().strip())
                except (OSError, ValueError):
                    continue  # `lifespan` is writable config, some counters are unreadable
            devices[f"{device.name}/{counters.parent.name}"] = values
    return {"host": socket.gethostname(), "devices": devices, "drivers": drivers,
            "gpus": _gpus()}


def _gpus() -> dict:
    """This host's GPU count through NVML, or why there is none (the run's `gpus` check)."""
    from verify.preflight import nvml_inventory

    inventory = nvml_inventory()
    if isinstance(inventory, str):
        return {"count": 0, "reason": inventory}
    return {"count": inventory.count, "model": inventory.models[0] if inventory.models else None}


def inventory_checks(snaps: dict[str, dict], hosts: list[str], gpus_per_host: int,
                     expect_efa: bool) -> list[Check]:
    """`gpus` and `efa_devices` on every host, from the snapshots taken before the run."""
    def ev(host: str, text: str) -> list[Evidence]:
        return [Evidence(f"{host}: efa-verify counters", 0, None, text)]

    if len(snaps) < len(hosts):
        reason = f"{len(snaps)} of {len(hosts)} hosts answered the inventory stage"
        return [Check("gpus", "unknown", True, reason), Check("efa_devices", "unknown", True,
                                                              reason)]
    gpus = {h: s["gpus"] for h, s in snaps.items()}
    short = {h: g for h, g in gpus.items() if g["count"] < gpus_per_host}
    if short:
        message = "; ".join(f"{h}: {g['count']} GPUs" + (f" ({g['reason']})" if g.get("reason")
                                                          else "") for h, g in short.items())
        message += f" (the run needs {gpus_per_host} per host)"
    else:
        message = f"{gpus_per_host}+ GPUs on each of {len(snaps)} host(s)"
    gpus_check = Check("gpus", "fail" if short else "pass", True, message,
                       [e for h, g in (short or gpus).items() for e in ev(h, json.dumps(g))][:4])
    if not expect_efa:
        return [gpus_check, Check("efa_devices", "skip", True, "EFA is not expected")]
    bare = sorted(h for h, s in snaps.items() if not efa_devices(s))
    counts = {h: len(efa_devices(s)) for h, s in snaps.items()}
    efa = Check("efa_devices", "fail" if bare else "pass", True,
                f"no EFA device on {', '.join(bare)} (sysfs class/infiniband has no device "
                "bound to the efa driver; SageMaker and EC2 attach EFA only on EFA-capable "
                "instance types, EKS needs the EFA device plugin)" if bare else
                "EFA devices on every host: " + ", ".join(f"{h} {n}" for h, n in counts.items()),
                [e for h in (bare or sorted(counts)) for e in ev(h, json.dumps(
                    snaps[h]["drivers"]))][:4])
    return [gpus_check, efa]


def efa_devices(snap: dict) -> list[str]:
    return [key for key in snap["devices"]
            if snap["drivers"].get(key.split("/")[0]) == "efa"]


def delta(before: dict, after: dict) -> dict[str, dict[str, int]]:
    """Growth per EFA device and counter between two snapshots of one host."""
    out = {}
    for key in efa_devices(after):
        old = before["devices"].get(key, {})
        out[key] = {name: value - old.get(name, value)
                    for name, value in after["devices"][key].items()}
    return out


def write_deltas(path: Path, deltas: dict[str, dict]) -> dict[tuple[str, str], int]:
    """One JSON line per host and device, so checks can cite file and line."""
    lines = {}
    with path.open("w", encoding="utf-8") as handle:
        for number, (host, key) in enumerate(
                ((h, k) for h in sorted(deltas) for k in sorted(deltas[h])), 1):
            handle.write(json.dumps({"host": host, "device": key,
                                     "delta": deltas[host][key]}, sort_keys=True) + "\n")
            lines[(host, key)] = number
    return lines


def _sum(counters: dict[str, int], names: list[str]) -> int:
    return sum(counters.get(name, 0) for name in names)


def counters_check(before: dict[str, dict], after: dict[str, dict], nodes: int | None,
                   path: Path) -> tuple[Check, dict]:
    """The `efa_counters` check and the per-host deltas it was decided on."""
    names = groups()
    deltas = {host: delta(before[host], after[host]) for host in after if host in before}
    summary = {host: {key: {"traffic_bytes": _sum(c, names["traffic"][:2]),
                            "rdma_bytes": _sum(c, names["rdma"]),
                            "trouble": {n: c[n] for n in names["trouble"] if c.get(n)}}
                      for key, c in devs.items()} for host, devs in deltas.items()}
    lines = write_deltas(path, deltas)

    def ev(host: str, key: str) -> Evidence:
        moved = summary[host][key]
        return Evidence(str(path), lines[(host, key)], None,
                        f"{host} {key}: {moved['traffic_bytes']} B tx+rx, "
                        f"{moved['rdma_bytes']} B RDMA")

    with_efa = {h: d for h, d in deltas.items() if d}
    if not with_efa:
        return Check("efa_counters", "skip", True, "no EFA device hw_counters on any host "
                     "(not an EFA instance, or /sys not visible in the container)"), summary
    if nodes == 1:
        return Check("efa_counters", "skip", True, "one NCCL node: NCCL keeps traffic on "
                     "NVLink/SHM, EFA counters are not expected to move"), summary
    missing = sorted(set(before) ^ set(after))
    if missing:
        return Check("efa_counters", "unknown", True, "counters missing before or after the "
                     "run on " + ", ".join(missing)), summary
    idle = sorted(h for h, devs in with_efa.items()
                  if not any(s["traffic_bytes"] for s in summary[h].values()))
    trouble = sorted({f"{h} {k}: " + ", ".join(f"{n}+{v}" for n, v in s["trouble"].items())
                      for h, devs in summary.items() for k, s in devs.items() if s["trouble"]})
    note = f"; trouble counters grew: {'; '.join(trouble)}" if trouble else ""
    if idle:
        evidence = [ev(h, k) for h in idle for k in sorted(with_efa[h])][:8]
        return Check("efa_counters", "fail", True, "EFA devices moved no data on "
                     + ", ".join(idle) + " during the run: NCCL did not use EFA there" + note,
                     evidence), summary
    # Every host of a collective sends the same bytes: one far below its peers sent
    # part of its share some other way (a NIC unused, a path off EFA).
    per_host = {h: float(sum(s["traffic_bytes"] for s in summary[h].values())) for h in with_efa}
    low = low_outliers(per_host)
    if low:
        evidence = [ev(o.name, k) for o in low for k in sorted(with_efa[o.name])][:8]
        return Check("efa_counters", "fail", True, "EFA traffic far below the other hosts' on "
                     + "; ".join(o.describe("B") for o in low) + note, evidence), summary
    total = sum(s["traffic_bytes"] for devs in summary.values() for s in devs.values())
    used = sum(1 for devs in summary.values() for s in devs.values() if s["traffic_bytes"])
    count = sum(len(devs) for devs in with_efa.values())
    evidence = [ev(h, k) for h in sorted(with_efa) for k in sorted(with_efa[h])
                if summary[h][k]["traffic_bytes"]][:8]
    return Check("efa_counters", "pass", True,
                 f"{total} B crossed EFA on {len(with_efa)} host(s), {used}/{count} devices "
                 "moved data" + note, evidence), summary
