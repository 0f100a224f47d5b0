"""The job model: what the events say about each process, rank, test and failure.

Events are aggregated as they stream in (counters plus the first few evidence
lines of each kind), so memory stays bounded whatever the input size.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache

from verify.checks import Evidence
from verify.logparse.scan import Event, Row
from verify.tables import load_table

EVIDENCE_CAP = 8  # evidence lines kept per fact
ERROR_CAP = 200  # error entries kept (the rest are counted)

NET_NAMES = {"aws libfabric": "libfabric", "libfabric": "libfabric", "ofi": "libfabric",
             "aws ofi": "libfabric", "ib": "ib", "socket": "socket"}


def net_kind(name: str | None) -> str | None:
    """NCCL's network name as the result's `transport` value.

    `IBext_v8` (NVIDIA's SHARP plugin) is IB; any other name (e.g. GCP's
    GPUDirectTCPX) is kept as `other:<name>`: not Libfabric, so not EFA.
    """
    if not name:
        return None
    key = name.strip().lower()
    if key in NET_NAMES:
        return NET_NAMES[key]
    if "libfabric" in key or "ofi" in key:
        return "libfabric"
    if key.startswith("ib"):
        return "ib"
    return f"other:{name.strip()}"


def gin_kind(name: str | None) -> str | None:
    """A GIN plugin's name as a transport: aws-ofi-nccl's `Libfabric` and
    `Libfabric_GDAKI` are Libfabric, NCCL's `GIN_IB_GDAKI`/`GIN_IB_PROXY` are IB."""
    if not name:
        return None
    parts = name.strip().lower().split("_")
    if "libfabric" in parts or "ofi" in parts:
        return "libfabric"
    if "ib" in parts:
        return "ib"
    return f"other:{name.strip()}"


def is_efa_provider(provider: str | None) -> bool:
    """`efa`, `efa;ofi_rxr`, `efa-direct`: libfabric's EFA provider family."""
    return bool(provider) and provider.split(";")[0].split("-")[0] == "efa"  # type: ignore[union-attr]


def normalise_provider(raw: str) -> str:
    """`efa, fabric is efa (found 4 nics)` -> `efa`; `efa;ofi_rxr` stays."""
    return raw.split(",")[0].split(" ")[0].strip().rstrip(".")


def evidence_of(event: Event | Row, rank: int | None = None) -> Evidence | None:
    """The line behind an event, or None for an occurrence that was only counted."""
    if isinstance(event, Row):
        return Evidence(event.file, event.line, rank, " ".join(event.values.values()))
    if event.line is None:
        return None
    if rank is None and event.ctx is not None:
        rank = event.ctx.mpi_rank
    return Evidence(event.file, event.line, rank, event.text)


@dataclass
class Fact:
    """A value seen in the log, with the lines that say it (first few kept)."""

    values: Counter = field(default_factory=Counter)
    evidence: dict[str, list[Evidence]] = field(default_factory=dict)

    def add(self, value: str, ev: Evidence | None, count: int = 1) -> None:
        self.values[value] += count
        lines = self.evidence.setdefault(value, [])
        if ev is not None and len(lines) < EVIDENCE_CAP:
            lines.append(ev)

    def wants(self, value: str) -> bool:
        return len(self.evidence.get(value, ())) < EVIDENCE_CAP

    def first(self, value: str) -> list[Evidence]:
        return self.evidence.get(value, [])

    def all_evidence(self) -> list[Evidence]:
        return [ev for lines in self.evidence.values() for ev in lines][:EVIDENCE_CAP]

    def __bool__(self) -> bool:
        return bool(self.values)


@dataclass
class RankState:
    rank: int
    host: str | None = None
    pid: int | None = None
    nets: Counter = field(default_factory=Counter)  # (transport, gdr) -> connections
    directions: Counter = field(default_factory=Counter)  # (send|receive, gdr) -> NET connections
    local_connections: int = 0  # P2P/SHM/... (not over the network)
    said_socket: bool = False  # a 'Using network Socket' line of this rank's process
    evidence: dict[tuple, list[Evidence]] = field(default_factory=dict)

    def add(self, key: tuple, ev: Evidence | None) -> None:
        lines = self.evidence.setdefault(key, [])
        if ev is not None and len(lines) < 2:
            lines.append(ev)

    def wants(self, key: tuple) -> bool:
        return len(self.evidence.get(key, ())) < 2


@dataclass
class TestRun:
    file: str
    line: int
    fmt: str  # "new" (#wrong, root), "old" (float error), "nccom"
    rows: list[dict] = field(default_factory=list)
    avg_busbw: float | None = None
    avg_evidence: Evidence | None = None
    out_of_bounds: int | None = None
    oob_evidence: Evidence | None = None
    checked_rows: int = 0  # rows whose #wrong (or old 'error') columns hold values
    unchecked_rows: int = 0  # rows with N/A there: nccl-tests ran with -c 0

    @property
    def complete(self) -> bool:
        return self.avg_busbw is not None

    @property
    def data_checked(self) -> bool:
        """False when nccl-tests did not check its results (every row N/A): its
        'Out of bounds values : 0 OK' then counts nothing."""
        return self.checked_rows > 0 or self.unchecked_rows == 0


@dataclass
class ErrorEntry:
    """One distinct failure message; identical ones from other ranks are counted."""

    kind: str
    severity: str
    message: str
    evidence: Evidence
    cause: str | None = None
    fix: str | None = None
    occurrences: int = 1

    def as_dict(self) -> dict:
        return {"kind": self.kind, "severity": self.severity, "message": self.message,
                "file": self.evidence.file, "line": self.evidence.line,
                "rank": self.evidence.rank, "occurrences": self.occurrences,
                "cause": self.cause, "fix": self.fix}


@cache
def _diagnoses() -> list[dict]:
    import re

    rows = load_table("diagnoses")["diagnoses"]
    return [{**row, "rx": re.compile(row["match"])} for row in rows]


def diagnose(message: str, source: str) -> dict:
    """First diagnosis whose pattern matches (rows with `only` apply to that source)."""
    for row in _diagnoses():
        only = row.get("only")
        if only and only != source:
            continue
        if not only and source == "libfabric_warn" and row["id"] == "nccl-warn":
            continue
        if row["rx"].search(message):
            return row
    raise AssertionError("diagnoses table needs a catch-all row")


# Event kinds whose value is a fact (named after the kind): the field and its normaliser.
_FACT_FIELDS = {
    "using_network": ("net", net_kind), "net_assigned": ("net", net_kind),
    "gin_assigned": ("net", gin_kind),
    "net_initialized": ("net", net_kind), "net_init_failed": ("net", net_kind),
    "provider": ("provider", normalise_provider),
    "provider_filter": ("provider", normalise_provider),
    "fi_provider_env": ("provider", normalise_provider),
    "ofi_version": ("version", str), "libfabric_version": ("version", str),
    "nccl_version": ("version", str), "nccl_version_in_error": ("version", str),
    "gdr_off": ("text", str),
}
_YES_FACTS = ("plugin_loaded", "plugin_absent", "ib_no_device", "socket_using",
              "libfabric_efa", "efa_address", "gin_gdaki")


def trace_net(source: str) -> str:
    """The transport an error trace's source file or function belongs to."""
    if "net_socket" in source:
        return "socket"
    if "ofi_" in source:
        return "libfabric"
    return "ib"  # transport/net_ib, misc/ibvwrap, ib_plugin


def _fact_value(kind: str, fields: dict[str, str | None]) -> str | None:
    """The value an event adds to its fact, or None if the kind is not a fact."""
    if kind in _FACT_FIELDS:
        name, norm = _FACT_FIELDS[kind]
        return norm(fields.get(name) or "") or "?"
    if kind in _YES_FACTS:
        return "yes"
    if kind == "ofi_platform":
        return fields.get("platform") or "aws"
    if kind == "ib_using":
        return fields.get("link") or "IB"
    if kind == "trace_transport":
        return trace_net(fields.get("source") or "")
    return None


def _log_number(text: str | None) -> bool:
    """Is `text` a number as a log prints it: ASCII only, no `_`?  float() and int()
    also read other scripts' digits (`٤٠٠.٠٠` is 400.0), which turned a failing
    busbw into a passing one (attack-2 SA-5), and `1_0` as 10."""
    return text is not None and text.isascii() and "_" not in text


def _float(text: str | None) -> float | None:
    try:
        return float(text) if _log_number(text) else None
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if _log_number(text) else None
    except ValueError:
        return None


class JobModel:
    """Aggregates events from every input into facts the verdict is built from."""

    def __init__(self) -> None:
        self.facts: dict[str, Fact] = {}
        self.ranks: dict[int, RankState] = {}
        self.proc_rank: dict[tuple, int] = {}  # (host, pid, dev) -> NCCL rank
        self.tests: list[TestRun] = []
        self._open_test: dict[str, TestRun] = {}
        self.errors: list[ErrorEntry] = []
        self._error_index: dict[tuple[str, str], ErrorEntry] = {}
        self.errors_dropped = 0
        self.nranks = 0
        self.nnodes = 0
        self.device_hosts: dict[int, str] = {}  # nccl-tests '# Rank N ... on HOST'
        self.device_evidence: dict[int, Evidence] = {}  # the '# Rank N' line itself
        self.record_hosts: set[str] = set()
        self.events = 0
        # Connections counted without their rank: per-rank counts are then partial.
        self.rankless_connections = 0
        self.kinds: Counter[str] = Counter()  # events per pattern name

    # -- helpers ---------------------------------------------------------------
    def fact(self, name: str) -> Fact:
        return self.facts.setdefault(name, Fact())

    def _rank_of(self, event: Event) -> int | None:
        ctx = event.ctx
        if ctx is None:
            return None
        rank = self.proc_rank.get((ctx.host, ctx.pid, ctx.dev))
        return rank if rank is not None else ctx.mpi_rank

    def _error(self, kind: str, message: str, ev: Evidence | None, source: str,
               count: int = 1) -> None:
        diag = diagnose(message, source)
        if diag["id"] not in ("nccl-warn", "libfabric-warn"):
            kind = diag["kind"]
        message = message.strip()
        entry = self._error_index.get((kind, message))
        if entry is not None:
            entry.occurrences += count
            if ev is not None and (ev.file, ev.line) < (entry.evidence.file, entry.evidence.line):
                entry.evidence = ev  # cite the first occurrence, whatever order inputs came in
            return
        if ev is None:  # counted before its first line was located: keep for the count
            ev = Evidence("?", 0, None, message)
        self.fact("error_kind").add(kind, ev, count)
        if len(self.errors) >= ERROR_CAP:
            self.errors_dropped += count
            return
        entry = ErrorEntry(kind, diag["severity"], message, ev, diag["cause"], diag["fix"], count)
        self._error_index[(kind, message)] = entry
        self.errors.append(entry)

    def wants_evidence(self, kind: str, fields: dict[str, str | None]) -> bool:
        """Whether one more located line of this event would be kept as evidence."""
        if kind == "channel":
            rank = _int(fields["dst"] if fields.get("dir") == "receive" else fields["src"])
            state = self.ranks.get(rank) if rank is not None else None
            if state is None:
                return True
            key = (net_kind(fields["net"]), fields["gdr"] is not None) if fields["net"] \
                else ("local",)
            return state.wants(key) or state.host is None
        if kind in ("warn", "libfabric_warn", "test_failure", "plugin_warn"):
            return True
        value = _fact_value(kind, fields)
        if value is None:
            return kind in ("tests_devices", "comm_init")
        fact = self.facts.get(kind)
        return fact is None or fact.wants(value)

    # -- sink ------------------------------------------------------------------
    def event(self, event: Event) -> None:
        self.events += event.count
        self.kinds[event.kind] += event.count
        kind, f, n = event.kind, event.fields, event.count
        if event.ctx is not None and event.ctx.host:
            self.record_hosts.add(event.ctx.host)
        if kind == "channel":
            self._channel(event)
            return
        ev = evidence_of(event, self._rank_of(event))
        value = _fact_value(kind, f)
        if value is not None:
            self.fact(kind).add(value, ev, n)
            if kind == "gdr_off" and ("GDR disabled on GDR-supported" in value
                                      or "FI_HMEM" in value):
                return  # reported as an error by the WARN / libfabric line itself
        if kind in ("comm_init", "nodes_summary"):
            self._comm(event, ev)
        elif kind == "tests_devices":
            rank = _int(f["rank"])
            if rank is not None and f["host"]:
                self.device_hosts[rank] = f["host"]
                if ev is not None:
                    self.device_evidence.setdefault(rank, ev)
        elif kind in ("using_network", "net_assigned") and value == "socket":
            rank = self._rank_of(event)
            if rank is not None:  # one communicator over sockets: the rank used sockets
                state = self.ranks.setdefault(rank, RankState(rank))
                state.said_socket = True
                state.add(("socket", False), ev)
        elif kind in ("tests_header", "nccom_header"):
            fmt = "nccom" if kind == "nccom_header" else \
                "new" if "#wrong" in event.text or "root" in event.text else "old"
            test = TestRun(event.file, event.line or 0, fmt)
            self.tests.append(test)
            self._open_test[event.file] = test
        elif kind == "avg_busbw":
            test = self._test_for(event)
            test.avg_busbw = _float(f["value"])
            test.avg_evidence = ev
            self._open_test.pop(event.file, None)
        elif kind == "out_of_bounds":
            test = self._test_for(event)
            test.out_of_bounds = _int(f["count"])
            test.oob_evidence = ev
            if f["state"] == "FAILED" or (test.out_of_bounds or 0) > 0:
                self._error("out_of_bounds", event.text.strip(), ev, "tests", n)
        elif kind == "warn":
            self._error("nccl_warn", f["message"] or event.text, ev, "warn", n)
        elif kind == "libfabric_warn":
            self._error("libfabric_warn", f["message"] or event.text, ev, "libfabric_warn", n)
        elif kind == "test_failure":
            self._error("test_failure", f["message"] or event.text, ev, "test_failure", n)
        elif kind == "plugin_warn":
            self._error("nccl_warn", f["message"] or event.text, ev, "warn", n)

    def _comm(self, event: Event, ev: Evidence | None) -> None:
        f = event.fields
        nnodes = _int(f.get("nnodes"))
        nranks, local = _int(f.get("nranks")), _int(f.get("local"))
        if not nnodes and nranks and local and nranks % local == 0:
            nnodes = nranks // local  # NCCL's own count when it prints no nNodes
        if nnodes:
            self.nnodes = max(self.nnodes, nnodes)
            self.fact("nnodes").add(str(nnodes), ev, event.count)
        if event.kind == "comm_init":
            rank, nranks = _int(f["rank"]), _int(f["nranks"])
            self.nranks = max(self.nranks, nranks or 0)
            ctx = event.ctx
            if rank is not None and ctx is not None and ctx.host is not None:
                self.proc_rank.setdefault((ctx.host, ctx.pid, ctx.dev), rank)
                state = self.ranks.setdefault(rank, RankState(rank))
                state.host, state.pid = state.host or ctx.host, state.pid or ctx.pid

    def _channel(self, event: Event) -> None:
        """One connection kind, counted per rank; counted lines whose ranks were masked
        (tier 1's shape counting at scale) add to the job's facts only."""
        f = event.fields
        src, dst = _int(f["src"]), _int(f["dst"])
        rank = dst if f["dir"] == "receive" else src
        state = self.ranks.setdefault(rank, RankState(rank)) if rank is not None else None
        if state is None:
            self.rankless_connections += event.count
        elif state.host is None and event.ctx is not None and event.ctx.host:
            state.host, state.pid = event.ctx.host, event.ctx.pid
        ev = evidence_of(event, rank)
        if f["net"] is None:
            if state is not None:
                state.local_connections += event.count
                state.add(("local",), ev)
            self.fact("local_channel").add((f["via"] or "").split("/")[0], ev, event.count)
            return
        key = (net_kind(f["net"]), f["gdr"] is not None)
        if state is not None:
            state.nets[key] += event.count
            state.add(key, ev)
        value = f"{key[0]}{'/GDRDMA' if key[1] else ''}"
        self.fact("net_channel").add(value, ev, event.count)
        if f["dir"]:  # GPUDirect is decided per direction (see decide.gdr_used)
            self.fact(f"net_channel_{f['dir']}").add(value, ev, event.count)
            if state is not None:
                state.directions[(f["dir"], key[1])] += event.count

    def _test_for(self, event: Event) -> TestRun:
        test = self._open_test.get(event.file)
        if test is None:  # a summary without a header we saw (trimmed logs)
            test = TestRun(event.file, event.line, "unknown")
            self.tests.append(test)
            self._open_test[event.file] = test
        return test

    def row(self, row: Row) -> None:
        test = self._open_test.get(row.file)
        if test is None:
            return
        values = row.values
        parsed = {"size": _int(values.get("size")), "count": _int(values.get("count")),
                  "type": values.get("type"), "redop": values.get("redop"),
                  "root": _int(values.get("root")), "line": row.line}
        for side in ("oop", "ip"):
            parsed[side] = {
                "time_us": _float(values.get(f"{side}_time")),
                "algbw_GBps": _float(values.get(f"{side}_algbw")),
                "busbw_GBps": _float(values.get(f"{side}_busbw")),
                "wrong": _int(values.get(f"{side}_wrong")),
                "error": _float(values.get(f"{side}_error")),
            }
        if parsed["size"] is None:
            return
        test.rows.append(parsed)
        checks = [values.get(f"{side}_{col}") for side in ("oop", "ip")
                  for col in ("wrong", "error")]
        if any(v not in (None, "N/A") for v in checks):
            test.checked_rows += 1
        elif "N/A" in checks:
            test.unchecked_rows += 1
        wrong = sum(parsed[s]["wrong"] or 0 for s in ("oop", "ip"))
        if wrong:
            self._error("wrong_values", f"{wrong} wrong values at size {parsed['size']} B",
                        evidence_of(row), "tests")

    def truncated(self, file: str, line: int, problem: str) -> None:
        """An input that ends early: a warning with where it broke."""
        self._error("truncated_input", problem, Evidence(file, max(line, 1), None, problem),
                    "truncated")

    def figure_error(self, message: str, ev: Evidence) -> None:
        """A bandwidth figure no instance can produce (bandwidth.impossible_rows): an
        error at its line, so it can never pass."""
        self._error("impossible_figure", message, ev, "figures")
        self.finish()

    def add_error(self, entry: ErrorEntry) -> None:
        """An error established outside the logs (a hang the supervisor saw)."""
        self.fact("error_kind").add(entry.kind, entry.evidence)
        self.errors.append(entry)

    def finish(self) -> None:
        """Order errors by where they are, once every input is in."""
        self.errors.sort(key=lambda e: (e.evidence.file, e.evidence.line))
