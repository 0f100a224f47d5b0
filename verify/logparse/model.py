"""The job model: what the events say about each process, rank, test and failure.

Events are aggregated as they stream in (counters plus the first few evidence
lines of each kind), so memory stays bounded whatever the input size.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache

from verify.logparse.scan import Event, Row
from verify.tables import load_table

EVIDENCE_CAP = 8  # evidence lines kept per fact
ERROR_CAP = 200  # error entries kept (the rest are counted)

NET_NAMES = {"aws libfabric": "libfabric", "libfabric": "libfabric", "ofi": "libfabric",
             "aws ofi": "libfabric", "ib": "ib", "socket": "socket"}


def net_kind(name: str | None) -> str | None:
    """NCCL's network name as the result's `transport` value."""
    if not name:
        return None
    key = name.strip().lower()
    if key in NET_NAMES:
        return NET_NAMES[key]
    return "libfabric" if "libfabric" in key or "ofi" in key else key


def normalise_provider(raw: str) -> str:
    """`efa, fabric is efa (found 4 nics)` -> `efa`; `efa;ofi_rxr` stays."""
    return raw.split(",")[0].split(" ")[0].strip().rstrip(".")


@dataclass(frozen=True)
class Evidence:
    file: str
    line: int
    rank: int | None
    text: str

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "rank": self.rank, "text": self.text}


def evidence_of(event: Event | Row, rank: int | None = None, text: str | None = None) -> Evidence:
    if isinstance(event, Row):
        return Evidence(event.file, event.line, rank, text or " ".join(event.values.values()))
    if rank is None:
        rank = event.ctx.mpi_rank
    return Evidence(event.file, event.line, rank, text if text is not None else event.text)


@dataclass
class Fact:
    """A value seen in the log, with the lines that say it (first few kept)."""

    values: Counter = field(default_factory=Counter)
    evidence: dict[str, list[Evidence]] = field(default_factory=dict)

    def add(self, value: str, ev: Evidence) -> None:
        self.values[value] += 1
        lines = self.evidence.setdefault(value, [])
        if len(lines) < EVIDENCE_CAP:
            lines.append(ev)

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
    local_connections: int = 0  # P2P/SHM/... (not over the network)
    evidence: dict[tuple, list[Evidence]] = field(default_factory=dict)

    def add(self, key: tuple, ev: Evidence) -> None:
        lines = self.evidence.setdefault(key, [])
        if len(lines) < 2:
            lines.append(ev)


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

    @property
    def complete(self) -> bool:
        return self.avg_busbw is not None


@dataclass
class ErrorEntry:
    kind: str
    severity: str
    message: str
    evidence: Evidence
    cause: str | None = None
    fix: str | None = None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "severity": self.severity, "message": self.message,
                "file": self.evidence.file, "line": self.evidence.line,
                "rank": self.evidence.rank, "cause": self.cause, "fix": self.fix}


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


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
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
        self.errors_dropped = 0
        self.nranks = 0
        self.nnodes = 0
        self.device_hosts: dict[int, str] = {}  # nccl-tests '# Rank N ... on HOST'
        self.record_hosts: set[str] = set()
        self.events = 0

    # -- helpers ---------------------------------------------------------------
    def fact(self, name: str) -> Fact:
        return self.facts.setdefault(name, Fact())

    def _rank_of(self, event: Event) -> int | None:
        ctx = event.ctx
        rank = self.proc_rank.get((ctx.host, ctx.pid, ctx.dev))
        return rank if rank is not None else ctx.mpi_rank

    def _error(self, kind: str, message: str, ev: Evidence, source: str) -> None:
        diag = diagnose(message, source)
        if diag["id"] not in ("nccl-warn", "libfabric-warn"):
            kind = diag["kind"]
        self.fact("error_kind").add(kind, ev)
        if len(self.errors) >= ERROR_CAP:
            self.errors_dropped += 1
            return
        self.errors.append(ErrorEntry(kind, diag["severity"], message.strip(), ev,
                                      diag["cause"], diag["fix"]))

    # -- sink ------------------------------------------------------------------
    def event(self, event: Event) -> None:  # noqa: C901 - one branch per event kind
        self.events += 1
        kind, f = event.kind, event.fields
        if event.ctx.host:
            self.record_hosts.add(event.ctx.host)
        if kind == "channel":
            self._channel(event)
            return
        ev = evidence_of(event, self._rank_of(event))
        if kind in ("using_network", "net_assigned", "net_initialized", "net_init_failed"):
            self.fact(kind).add(net_kind(f["net"]) or "?", ev)
        elif kind == "provider":
            self.fact("provider").add(normalise_provider(f["provider"] or ""), ev)
        elif kind == "provider_filter":
            self.fact("provider_filter").add(normalise_provider(f["provider"] or ""), ev)
        elif kind == "fi_provider_env":
            self.fact("fi_provider_env").add(normalise_provider(f["provider"] or ""), ev)
        elif kind == "ofi_version":
            self.fact("ofi_version").add(f["version"] or "", ev)
        elif kind == "libfabric_version":
            self.fact("libfabric_version").add(f["version"] or "", ev)
        elif kind == "nccl_version":
            self.fact("nccl_version").add(f["version"] or "", ev)
        elif kind == "ofi_platform":
            self.fact("ofi_platform").add(f.get("platform") or "aws", ev)
        elif kind in ("plugin_loaded", "plugin_absent", "ib_no_device", "socket_using",
                      "libfabric_efa", "efa_address"):
            self.fact(kind).add("yes", ev)
        elif kind == "gdr_off":
            self.fact("gdr_off").add(f["text"] or "", ev)
            if "GDR disabled on GDR-supported" in (f["text"] or ""):
                return  # the WARN pattern on the same line reports it as an error
            if "FI_HMEM" in (f["text"] or ""):
                return  # reported through libfabric_warn
        elif kind in ("comm_init", "nodes_summary"):
            self._comm(event, ev)
        elif kind == "tests_devices":
            rank = _int(f["rank"])
            if rank is not None and f["host"]:
                self.device_hosts[rank] = f["host"]
        elif kind in ("tests_header", "nccom_header"):
            fmt = "nccom" if kind == "nccom_header" else \
                "new" if "#wrong" in event.text or "root" in event.text else "old"
            test = TestRun(event.file, event.line, fmt)
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
                self._error("out_of_bounds", event.text.strip(), ev, "tests")
        elif kind == "warn":
            self._error("nccl_warn", f["message"] or event.text, ev, "warn")
        elif kind == "libfabric_warn":
            self._error("libfabric_warn", f["message"] or event.text, ev, "libfabric_warn")
        elif kind == "test_failure":
            self._error("test_failure", f["message"] or event.text, ev, "test_failure")

    def _comm(self, event: Event, ev: Evidence) -> None:
        f = event.fields
        nnodes = _int(f.get("nnodes"))
        if nnodes:
            self.nnodes = max(self.nnodes, nnodes)
            self.fact("nnodes").add(str(nnodes), ev)
        if event.kind == "comm_init":
            rank, nranks = _int(f["rank"]), _int(f["nranks"])
            self.nranks = max(self.nranks, nranks or 0)
            ctx = event.ctx
            if rank is not None and ctx.host is not None:
                self.proc_rank.setdefault((ctx.host, ctx.pid, ctx.dev), rank)
                state = self.ranks.setdefault(rank, RankState(rank))
                state.host, state.pid = state.host or ctx.host, state.pid or ctx.pid

    def _channel(self, event: Event) -> None:
        f = event.fields
        src, dst = _int(f["src"]), _int(f["dst"])
        rank = dst if f["dir"] == "receive" else src
        if rank is None:
            return
        state = self.ranks.setdefault(rank, RankState(rank))
        if state.host is None and event.ctx.host:
            state.host, state.pid = event.ctx.host, event.ctx.pid
        ev = evidence_of(event, rank)
        if f["net"] is None:
            state.local_connections += 1
            self.fact("local_channel").add((f["via"] or "").split("/")[0], ev)
            return
        key = (net_kind(f["net"]), f["gdr"] is not None)
        state.nets[key] += 1
        state.add(key, ev)
        self.fact("net_channel").add(f"{key[0]}{'/GDRDMA' if key[1] else ''}", ev)

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
        wrong = sum(parsed[s]["wrong"] or 0 for s in ("oop", "ip"))
        if wrong:
            self._error("wrong_values", f"{wrong} wrong values at size {parsed['size']} B",
                        evidence_of(row), "tests")
