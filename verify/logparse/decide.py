"""From the job model to the result: transport, EFA, GDR, bandwidth, checks.

The verifier never guesses: each value is `None` (JSON null) when the log
cannot tell, and each comes with the evidence lines behind it.  When ranks
disagree, the top level takes the value that fails the job.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from verify.checks import Evidence
from verify.logparse.model import JobModel, TestRun, is_efa_provider
from verify.profiles import Profile, UnknownInstance, resolve

# Transports ranked from worst to best: the worst one seen is the job's.
TRANSPORT_ORDER = ("socket", "ib", "libfabric")
# libfabric providers without GPUDirect RDMA.
DIRECTIONS = ("receive", "send")  # NCCL decides GPUDirect RDMA per direction
NON_RDMA_PROVIDERS = ("tcp", "sockets", "udp", "shm")


EVIDENCE_SHOWN = 8
# Patterns that match lines from outside NCCL and nccl-tests (libfabric's own log, an
# environment dump): alone they say nothing about what NCCL did.
NOT_NCCL = frozenset({"libfabric_efa", "libfabric_warn", "efa_address", "fi_provider_env"})
NO_NCCL_LINES = "no NCCL lines found (is NCCL_DEBUG=INFO set in the job? empty or truncated?)"


def has_nccl_lines(m: JobModel) -> bool:
    """Whether any NCCL or nccl-tests line was read: without one no verdict can be made."""
    return any(n for kind, n in m.kinds.items() if kind not in NOT_NCCL)


@dataclass
class Finding:
    """A derived value, why, and the lines that show it."""

    value: object
    reason: str
    evidence: list[Evidence] = field(default_factory=list)
    other: str | None = None  # a network outside the transport enum, by name

    def as_dict(self) -> dict:
        return {"value": self.value, "reason": self.reason,
                "evidence": [e.as_dict() for e in self.evidence]}


def _worst(values: set[str]) -> str:
    """Socket, then IB, then any unknown network, then Libfabric."""
    for value in TRANSPORT_ORDER[:2]:
        if value in values:
            return value
    others = sorted(values - {"libfabric"})
    return others[0] if others else "libfabric"


def _named(finding: Finding) -> Finding:
    """An `other:<name>` network is reported as null transport, with its name said."""
    value = finding.value
    if isinstance(value, str) and value.startswith("other:"):
        return Finding(None, f"NCCL used network {value[6:]!r}, neither Libfabric, IB nor "
                       "Socket", finding.evidence, other=value[6:])
    return finding


def transport(m: JobModel) -> Finding:
    finding = _named(_transport(m))
    if finding.value == "libfabric":
        return _unheard(m) or finding
    return finding


def socket_evidence(m: JobModel) -> list[Evidence]:
    """Lines that say a communicator's data went over NCCL's Socket transport: a
    `via NET/Socket` channel, `Using network Socket` or an assigned Socket plugin.
    Any one of them, from any rank, file or host, fails the job: a rank that used
    sockets for one communicator did use sockets, whatever it printed for another.
    NCCL's `NET/Socket : Using [0]eth0` init line (socket_using) is not one: it is
    printed for the bootstrap interface even when OFI then carries the data."""
    ev = [e for key, lines in m.fact("net_channel").evidence.items()
          if key.split("/")[0] == "socket" for e in lines]
    for name in ("using_network", "net_assigned"):
        fact = m.facts.get(name)
        if fact and fact.values["socket"]:
            ev += fact.first("socket")
    return ev


def silent_hosts(m: JobModel) -> dict[str, list[int]]:
    """Hosts that nccl-tests lists ('# Rank N ... on HOST') but that printed no NCCL
    record at all, with their ranks.  Per host, not per rank: logs commonly hold INFO
    lines of only some ranks of a node (corpus 001 lists 16 ranks, 11 print), and a
    node's ranks share its network; a whole node without a line is unseen.  Names are
    compared up to the first dot (NCCL cuts its host names there).  Unknowable (empty)
    when no record carries a host prefix."""
    seen = {h.split(".")[0] for h in m.record_hosts}
    out: dict[str, list[int]] = {}
    if not seen:
        return out
    for rank, host in sorted(m.device_hosts.items()):
        if host.split(".")[0] not in seen:
            out.setdefault(host, []).append(rank)
    return out


def _unheard(m: JobModel) -> Finding | None:
    """Unknown transport when a listed node printed nothing: its ranks may have used
    anything (the verifier never guesses)."""
    silent = silent_hosts(m)
    if not silent:
        return None
    said = "; ".join(f"{host} (rank {', '.join(map(str, ranks))})"
                     for host, ranks in silent.items())
    ev = [m.device_evidence[r] for ranks in silent.values() for r in ranks
          if r in m.device_evidence][:EVIDENCE_SHOWN]
    return Finding(None, f"nccl-tests lists {said}, but no NCCL line comes from there: "
                   "its transport is unknown", ev)


def _transport(m: JobModel) -> Finding:
    sockets = socket_evidence(m)
    if sockets and not m.fact("net_channel").values["socket"]:
        return Finding("socket", "a rank logged 'Using network Socket': that communicator's "
                       "data went over sockets, whatever other lines say", sockets[:EVIDENCE_SHOWN])
    channel = {k.split("/")[0] for k in m.fact("net_channel").values}
    if channel:
        value = _worst(channel)
        evidence = [e for key, lines in m.fact("net_channel").evidence.items()
                    if key.split("/")[0] == value for e in lines][:EVIDENCE_SHOWN]
        return Finding(value, f"connections carried over NET/{value}", evidence)
    for name, why in (("net_assigned", "NCCL assigned the {} net plugin to the communicator"),
                      ("using_network", "NCCL logged 'Using network' {}"),
                      ("gin_assigned", "NCCL assigned the {} GIN plugin (GPU-initiated "
                       "networking) to the communicator")):
        fact = m.facts.get(name)
        if fact:
            value = _worst(set(fact.values))
            return Finding(value, why.format(value), fact.first(value))
    init = m.facts.get("net_initialized")
    if init:
        value = _worst(set(init.values))
        return Finding(value, f"the {value} net plugin initialized", init.first(value))
    errors = m.facts.get("error_kind")
    plugin_failed = bool(errors and errors.values["plugin_init_failed"])
    plugin_gone = m.facts.get("plugin_absent") or plugin_failed
    no_ib = m.facts.get("ib_no_device") or (m.facts.get("net_init_failed")
                                            and m.facts["net_init_failed"].values["ib"])
    if plugin_gone and no_ib:
        ev = (m.fact("plugin_absent").all_evidence() or m.fact("error_kind").first(
            "plugin_init_failed"))[:1] + m.fact("ib_no_device").all_evidence()[:1] + \
            m.fact("socket_using").all_evidence()[:1]
        return Finding("socket", "no working net plugin and no usable IB device: NCCL "
                       "used its internal Socket transport", ev)
    selected = m.facts.get("provider")
    if selected and not plugin_failed and all(is_efa_provider(v) for v in selected.values):
        # Only efa: the shared corpus labels a plugin over tcp;ofi_rxm as network
        # 'unknown' (corpus 020), and the corpus is the contract.
        return Finding("libfabric", "the net plugin selected the efa provider and no line "
                       "says NCCL used another network (this NCCL prints no 'Using network' "
                       "line)", selected.all_evidence()[:2])
    ib = m.facts.get("ib_using")
    if ib and not (m.facts.get("ofi_version") or m.facts.get("plugin_loaded")):
        return Finding("ib", "NCCL's IB transport found its devices (NCCL 2.4-2.6 print no "
                       "'Using network' line)", ib.all_evidence()[:2])
    trace = m.facts.get("trace_transport")
    if trace:
        kinds = set(trace.values) - ({"ib"} if no_ib else set()) - \
            ({"libfabric"} if plugin_failed else set())
        if kinds:
            value = _worst(kinds)
            return Finding(value, f"an error trace passed through the {value} transport's "
                           "code", trace.first(value)[:2])
    return Finding(None, "no 'Using network', net plugin or NET channel line")


def provider(m: JobModel) -> Finding:
    fact = m.facts.get("provider")
    if not fact:
        return Finding(None, "no 'Selected provider' line")
    values = set(fact.values)
    non_efa = sorted(v for v in values if not is_efa_provider(v))
    value = non_efa[0] if non_efa else sorted(values)[0]
    return Finding(value, f"the plugin selected provider {value}", fact.first(value))


def efa_named(m: JobModel) -> list[Evidence]:
    """Lines that name efa as the libfabric provider (a GDRDMA channel line names none)."""
    ev: list[Evidence] = []
    for name in ("provider", "provider_filter", "fi_provider_env"):
        fact = m.facts.get(name)
        if fact:
            for value in fact.values:
                if is_efa_provider(value):
                    ev += fact.first(value)[:2]
    for name in ("libfabric_efa", "efa_address", "gin_gdaki"):
        ev += m.fact(name).all_evidence()[:2]
    return ev


def efa_evidence(m: JobModel, instance: Profile | None) -> list[Evidence]:
    """Lines that show the libfabric provider in use is efa (not only the plugin name)."""
    ev = efa_named(m)
    gdr_lines = m.fact("net_channel").first("libfabric/GDRDMA")
    if gdr_lines and (instance is not None or m.facts.get("ofi_platform")):
        ev += gdr_lines[:1] + m.fact("ofi_platform").all_evidence()[:1]
    return ev


def efa_used(m: JobModel, net: Finding, prov: Finding, instance: Profile | None) -> Finding:
    if net.value in ("socket", "ib") or net.other:
        name = net.other or net.value
        return Finding(False, f"NCCL used {name}, not the Libfabric network", net.evidence)
    if prov.value is not None and not is_efa_provider(prov.value):
        return Finding(False, f"libfabric provider is {prov.value}, not efa", prov.evidence)
    net_lines = list(m.fact("net_channel").values)
    local = m.facts.get("local_channel")
    if net.value == "libfabric" and not net_lines and (local or m.nnodes == 1):
        ev = (local.all_evidence()[:2] if local else []) + m.fact("nnodes").first("1")[:1]
        return Finding(False, "every connection stayed on SHM/P2P inside one node", ev)
    if net.value is None:
        errors = m.facts.get("error_kind")
        if errors and errors.values["plugin_init_failed"]:
            return Finding(False, "the aws-ofi-nccl plugin failed to initialize",
                           errors.first("plugin_init_failed"))
        if m.facts.get("plugin_absent") and not m.facts.get("ofi_version"):
            return Finding(False, "no net plugin was found: NCCL cannot use EFA",
                           m.fact("plugin_absent").all_evidence())
        if silent_hosts(m):
            return Finding(None, net.reason, net.evidence)
        return Finding(None, "no line shows which network NCCL used")
    if net.value != "libfabric":
        return Finding(False, f"NCCL used {net.value}", net.evidence)
    efa = efa_evidence(m, instance)
    if efa:
        return Finding(True, "NCCL moved data over Libfabric with the efa provider",
                       net.evidence[:2] + efa)
    return Finding(None, "NCCL used Libfabric, but no line shows the provider was efa "
                   "(the plugin also runs over tcp;ofi_rxm and cxi)", net.evidence[:2])


def gdr_by_direction(m: JobModel) -> dict[str, bool | None]:
    """Per direction, whether every NET connection shows /GDRDMA (None: no connection
    of that direction seen).  Receives use GDR write; sends GDR read, which NCCL
    enables only on some platforms (NCCL_NET_GDR_READ)."""
    out: dict[str, bool | None] = {}
    for direction in DIRECTIONS:
        fact = m.facts.get(f"net_channel_{direction}")
        out[direction] = all(k.endswith("/GDRDMA") for k in fact.values) if fact else None
    return out


def rank_gdr(directions: Counter, net: int, gdr: int) -> bool | None:
    """One rank's GDR, by the job-wide rule of gdr_used: every NET connection shows
    /GDRDMA, or every receive does and only sends lack it (GDR write without GDR
    read); None without NET connections."""
    if not net:
        return None
    if gdr == net:
        return True
    receive_ok = directions[("receive", True)] > 0 and not directions[("receive", False)]
    return receive_ok and net - gdr == directions[("send", False)]


def gdr_used(m: JobModel, net: Finding, prov: Finding) -> Finding:
    if net.value == "socket":
        return Finding(False, "NCCL's Socket transport has no GPUDirect RDMA", net.evidence)
    if net.other:
        return Finding(None, f"GPUDirect over network {net.other!r} is not judged here",
                       net.evidence)
    off = m.facts.get("gdr_off")
    if off:
        return Finding(False, "a line says GPUDirect RDMA is off", off.all_evidence())
    fact = m.fact("net_channel")
    without = [k for k in fact.values if not k.endswith("/GDRDMA")]
    recv, send = m.facts.get("net_channel_receive"), m.facts.get("net_channel_send")
    if without and recv and send and all(k.endswith("/GDRDMA") for k in recv.values) and \
            all(fact.values[k] == send.values[k] for k in without):
        return Finding(True, "every [receive] NET connection shows /GDRDMA (GPUDirect RDMA "
                       "write); [send] connections do not read GPU memory directly "
                       "(NCCL_NET_GDR_READ is off there)",
                       recv.all_evidence()[:2] + send.first(without[0])[:2])
    if without:
        return Finding(False, "NET connections without /GDRDMA", fact.first(without[0]))
    if fact.values:
        return Finding(True, "every NET connection shows /GDRDMA", fact.all_evidence())
    if prov.value is not None and prov.value.split(";")[0] in NON_RDMA_PROVIDERS:
        return Finding(False, f"provider {prov.value} has no GPUDirect RDMA", prov.evidence)
    local = m.facts.get("local_channel")
    if local and m.nranks and all(m.ranks.get(r) and m.ranks[r].local_connections
                                  for r in range(m.nranks)):
        return Finding(False, "no network connection was made: every rank's connections "
                       "stayed on P2P/SHM inside the node", local.all_evidence()[:2])
    return Finding(None, "no NET channel line and no GDR statement")


def instance_from_log(m: JobModel) -> Profile | None:
    platform = m.facts.get("ofi_platform")
    for value in (platform.values if platform else ()):
        try:
            return resolve(value)
        except UnknownInstance:
            continue
    return None


def last_complete_test(m: JobModel) -> TestRun | None:
    complete = [t for t in m.tests if t.complete]
    return complete[-1] if complete else (m.tests[-1] if m.tests else None)


def wrong_values(test: TestRun | None) -> int | None:
    if test is None or not test.data_checked:
        return None
    counts = [r[s]["wrong"] for r in test.rows for s in ("oop", "ip")
              if r[s]["wrong"] is not None]
    if counts:
        return sum(counts)
    return test.out_of_bounds
