"""Which hosts a multi-node run spans, and how that was known.

Sources in order: `--hosts`, `--hostfile`, SageMaker's resource config, Slurm's
environment, then this host alone.  The source is named in the report because
a run over the wrong host list proves nothing about the cluster.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from verify.boundary.values import BadValue, digits, host_name
from verify.run.nodelist import expand_nodelist
from verify.tables import TableError, load_json_file, read_input_text

# More hosts than any one verification run launches; a larger list is a mistake.
MAX_SLURM_HOSTS = 16384
# Ranks on one host: more than any GPU node has GPUs; a larger count is a typo.
MAX_SLOTS = 256
# Slurm's per-node task count, as in SLURM_NTASKS_PER_NODE=8 or 8(x2).
_TASKS_RE = re.compile(r"([0-9]{1,4})(?:\(x[0-9]+\))?(?:,.*)?")


class HostsError(ValueError):
    """A host list that cannot be used: one line, exit 2."""


@dataclass(frozen=True)
class Host:
    name: str
    slots: int | None = None  # ranks on this host; None: GPUs per host


@dataclass(frozen=True)
class HostPlan:
    hosts: tuple[Host, ...]
    source: str

    def names(self) -> list[str]:
        return [h.name for h in self.hosts]


def _host(text: str, where: str) -> Host:
    """`name[:slots]`: a host name that cannot be read as an option by mpirun or ssh
    (`-V`), and slots in ASCII digits ('²'.isdigit() is true, int('²') fails)."""
    name, _, slots = text.strip().partition(":")
    try:
        host_name(name, where)
    except BadValue:
        raise HostsError(f"{where}: {text.strip()!r} is not a host name (letters, digits, "
                         "'-' and '.', not starting with '-')") from None
    if not slots:
        return Host(name)
    try:
        return Host(name, digits(slots, where, 1, MAX_SLOTS))
    except BadValue:
        raise HostsError(f"{where}: {text.strip()!r}: slots must be a positive integer (1 "
                         f"to {MAX_SLOTS})") from None


def _unique(hosts: list[Host], where: str) -> tuple[Host, ...]:
    seen = set()
    for host in hosts:
        if host.name in seen:
            raise HostsError(f"{where}: host {host.name} is listed twice")
        seen.add(host.name)
    if not hosts:
        raise HostsError(f"{where}: no hosts")
    return tuple(hosts)


def parse_hosts(text: str) -> tuple[Host, ...]:
    """`a,b:8` as given to --hosts (Open MPI's `--host` form)."""
    return _unique([_host(part, "--hosts") for part in text.split(",") if part.strip()],
                   "--hosts")


def read_hostfile(path: str) -> tuple[Host, ...]:
    """Open MPI hostfiles (`node slots=8`) and plain `node[:8]` lines; # comments."""
    try:
        lines = read_input_text(path).splitlines()
    except TableError as exc:
        raise HostsError(f"--hostfile {exc}") from None
    hosts = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        first, *rest = line.split()
        host = _host(first, where)
        for word in rest:
            key, _, value = word.partition("=")
            if key not in ("slots", "max_slots", "max-slots"):
                raise HostsError(f"{where}: unknown hostfile field {word!r}")
            if key == "slots":
                host = _host(f"{host.name}:{value}", where)
        hosts.append(host)
    return _unique(hosts, f"--hostfile {path}")


def from_sagemaker(path: str) -> HostPlan | None:
    """SageMaker's resource config: every host, the first is the MPI launcher."""
    try:
        config = load_json_file(path)
    except ValueError:  # TableError: missing, unreadable, not a file, not JSON
        return None
    hosts = config.get("hosts") if isinstance(config, dict) else None
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        return None
    return HostPlan(_unique([_host(h, path) for h in sorted(hosts)], path),
                    f"sagemaker-resource-config ({path})")


def from_slurm(env: dict[str, str]) -> HostPlan | None:
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        return None
    tasks = _TASKS_RE.fullmatch(env.get("SLURM_NTASKS_PER_NODE", ""))
    slots = int(tasks.group(1)) if tasks and 1 <= int(tasks.group(1)) <= MAX_SLOTS else None
    try:
        names = expand_nodelist(nodelist, MAX_SLURM_HOSTS)
    except ValueError as exc:
        raise HostsError(f"SLURM_JOB_NODELIST: {exc}") from None
    hosts = [Host(_host(n, "SLURM_JOB_NODELIST").name, slots) for n in names]
    return HostPlan(_unique(hosts, "SLURM_JOB_NODELIST"), "slurm (SLURM_JOB_NODELIST)")


def resolve_hosts(hosts: str | None, hostfile: str | None, env: dict[str, str],
                  sm_config: str) -> HostPlan:
    if hosts and hostfile:
        raise HostsError("give --hosts or --hostfile, not both")
    if hosts:
        return HostPlan(parse_hosts(hosts), "--hosts")
    if hostfile:
        return HostPlan(read_hostfile(hostfile), f"--hostfile {hostfile}")
    return (from_sagemaker(sm_config) or from_slurm(env)
            or HostPlan((Host(socket.gethostname()),), "this host only"))


def is_local(name: str) -> bool:
    return name in ("localhost", "127.0.0.1", socket.gethostname(), socket.getfqdn())
