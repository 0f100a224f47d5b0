"""Parse inputs and build the versioned JSON result (see verify/schema/result.schema.json)."""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import dataclass

from verify import bandwidth, baseline
from verify import checks as checkmod
from verify.baseline import Baseline
from verify.checks import SCHEMA_VERSION, Check, Evidence
from verify.logparse import decide
from verify.logparse.decide import Finding
from verify.logparse.model import JobModel, is_efa_provider
from verify.logparse.scan import scan_sources
from verify.logparse.sources import Source, Unread
from verify.policy import Policy
from verify.profiles import Profile
from verify.tables import load_table


@dataclass
class Options:
    instance: Profile | None = None
    instance_source: str | None = None
    expect_nodes: int | None = None
    expect_provider: str = "efa"
    collective: str | None = None  # what `run --test` ran; parse reads it from the table
    baseline: Baseline | None = None


def parse_sources(sources: list[Source]) -> tuple[JobModel, list[dict]]:
    model = JobModel()
    inputs = []
    for scanner in scan_sources(sources, model):
        name = scanner.source.name
        inputs.append({"file": name, "lines": scanner.lines, "bytes": scanner.bytes,
                       "problems": scanner.problems})
        for problem in scanner.problems:
            model.truncated(name, scanner.lines, problem)
    model.finish()
    return model, inputs


def _status(value: object, good: object = True) -> str:
    if value is None:
        return "unknown"
    return "pass" if value == good else "fail"


def _version(m: JobModel, name: str) -> tuple[str | None, Counter]:
    fact = m.facts.get(name)
    if not fact:
        return None, Counter()
    return fact.values.most_common(1)[0][0], fact.values


def _nodes(m: JobModel) -> int | None:
    if m.nnodes:
        return m.nnodes
    hosts = set(m.device_hosts.values()) or m.record_hosts
    return len(hosts) or None


def _ranks(m: JobModel) -> int | None:
    return m.nranks or len(m.device_hosts) or len(m.ranks) or None


def _bandwidth_checks(m: JobModel, opts: Options, instance: Profile | None,
                      nodes: int | None, ranks: int | None) -> list[Check]:
    """bandwidth (published), bandwidth_derived (model) and bandwidth_baseline (site)."""
    names = ("bandwidth", "bandwidth_derived", "bandwidth_baseline")
    judged, why = bandwidth.judge_tables(m.tests, ranks, nodes, opts.collective)
    if why is None:
        return [Check(n, "skip", True, "no nccl-tests results in the input") for n in names]
    if instance is None and not why:
        why = "no instance type (--instance-type) to take an expectation from"
    if why:
        checks = [Check(n, "unknown", True, why) for n in names[:2]]
        return checks + [baseline.compare_check(opts.baseline, [], why)]
    return [bandwidth.published_check(judged, instance), bandwidth.derived_check(judged, instance),
            baseline.compare_check(opts.baseline, judged, why)]


def _causes_first(checks: list[Check]) -> list[Check]:
    """Inventory checks (run.yaml causes_first) ahead of the rest, in that order: the
    verdict names the first failing required check, and a missing GPU, driver or EFA
    device is the cause of the benchmark's failure and its error lines, not one more
    symptom beside them.  The rest keep their order."""
    first = load_table("run")["causes_first"]
    return sorted(checks, key=lambda c: first.index(c.name) if c.name in first
                  else len(first))


# Checks fed by lines tier 2 reads (nccl-tests tables, non-NCCL error lines): a line
# cut into pieces loses them, while the NCCL records in it are still counted whole.
TIER2_CHECKS = ("nccl_tests", "bandwidth", "bandwidth_derived", "bandwidth_baseline", "errors")


def _unread(checks: list[Check], inputs: list[dict]) -> list[Check]:
    """Checks an unreadable part of the input may have hidden a failure from: a pass or
    skip there becomes unknown, citing the first such line; a fail stays a fail.  So a
    mangled log never earns a better verdict than the log itself (attack-1 SA-9: a
    failing log with its newlines lost read as PASS)."""
    unread = [(i["file"], p) for i in inputs for p in i["problems"] if isinstance(p, Unread)]
    if not unread:
        return checks
    out = []
    for check in checks:
        hit = [(f, p) for f, p in unread if p.everything or check.name in TIER2_CHECKS]
        if not hit or check.status not in ("pass", "skip"):
            out.append(check)
            continue
        file, problem = hit[0]
        out.append(Check(check.name, "unknown", check.required,
                         f"{file} line {problem.line}: part of the input could not be read "
                         f"whole (see its warning), so this cannot {check.status}; as read: "
                         f"{check.message}",
                         [Evidence(file, problem.line, None, str(problem)),
                          *check.evidence][:4]))
    return out


def _errors_message(errors: list) -> str:
    """How many error lines, and the first one's diagnosis: the earliest line is most
    often the cause of the rest (a missing driver before the test's own failure)."""
    if not errors:
        return "no error lines"
    first = errors[0]
    return (f"{len(errors)} error line(s); first: [{first.kind}] "
            f"{textwrap.shorten(first.message, 120, placeholder=' [...]')}")


def _drop_impossible(m: JobModel, limit: float) -> None:
    """Figures no instance can produce become errors at their lines and leave the table,
    so neither the verdict nor the peak/average can rest on them."""
    for test in m.tests:
        for row, what in bandwidth.impossible_rows(test, limit):
            line = row["line"] if row else \
                (test.avg_evidence.line if test.avg_evidence else test.line)
            m.figure_error(f"impossible bandwidth figure: {what} (not a number, negative, or "
                           f"above {limit:g} GB/s, the most this instance's links carry)",
                           Evidence(test.file, line, None, what))
            if row is None:
                test.avg_busbw = None
            else:
                test.rows.remove(row)


def _rank_details(m: JobModel, prov: Finding) -> list[dict]:
    out = []
    for rank in sorted(m.ranks):
        state = m.ranks[rank]
        net = sum(state.nets.values())
        gdr = sum(n for (kind, g), n in state.nets.items() if g)
        transports = sorted({kind for kind, _ in state.nets} |
                            ({"socket"} if state.said_socket else set()))
        ev = [e for lines in state.evidence.values() for e in lines][:4]
        row = {
            "rank": rank, "host": state.host, "pid": state.pid, "node": None,
            "transport": _enum(decide._worst(set(transports))) if transports else None,
            "provider": prov.value,
            "net_connections": net, "gdr_connections": gdr,
            "local_connections": state.local_connections,
            "gdr": decide.rank_gdr(state.directions, net, gdr),
            **{f"gdr_{d}": _direction_gdr(state.directions, d) for d in decide.DIRECTIONS},
            "evidence": [e.as_dict() for e in ev],
        }
        if m.rankless_connections:  # counted at scale without ranks: only the cited
            for name in ("net_connections", "gdr_connections", "local_connections"):
                del row[name]  # lines are per rank, so only what they rule out is known
            row["gdr"] = False if net - gdr > state.directions[("send", False)] else None
            for d in decide.DIRECTIONS:
                row[f"gdr_{d}"] = False if state.directions[(d, False)] else None
            if row["transport"] == "libfabric":
                row["transport"] = None
        out.append(row)
    for host, ranks in decide.silent_hosts(m).items():  # listed, never heard from
        out += [{"rank": rank, "host": host, "pid": None, "node": None, "transport": None,
                 "provider": None, "gdr": None, "evidence": [
                     m.device_evidence[rank].as_dict()] if rank in m.device_evidence else []}
                for rank in ranks if rank not in m.ranks]
    return sorted(out, key=lambda row: row["rank"])


def _enum(value: str) -> str | None:
    return None if value.startswith("other:") else value


def _tests(m: JobModel) -> list[dict]:
    return [{"file": t.file, "line": t.line, "format": t.fmt, "complete": t.complete,
             "avg_busbw_GBps": t.avg_busbw, "out_of_bounds": t.out_of_bounds,
             "wrong_values": decide.wrong_values(t), "rows": t.rows} for t in m.tests]


def build(model: JobModel, inputs: list[dict], opts: Options, policy: Policy,
          command: str = "parse", more_checks: tuple[Check, ...] = ()) -> dict:
    """The result; `more_checks` come from outside the logs (a run's stages, counters)."""
    m = model
    instance = opts.instance
    instance_source = opts.instance_source
    if instance is None:
        instance = decide.instance_from_log(m)
        instance_source = "log (aws-ofi-nccl platform line)" if instance else None
    net = decide.transport(m)
    prov = decide.provider(m)
    efa = decide.efa_used(m, net, prov, instance)
    gdr = decide.gdr_used(m, net, prov)
    directions = decide.gdr_by_direction(m) if gdr.value is not None else \
        dict.fromkeys(decide.DIRECTIONS, gdr.value)
    nccl_version, nccl_versions = _version(m, "nccl_version")
    plugin_version, _ = _version(m, "ofi_version")
    libfabric_version, _ = _version(m, "libfabric_version")
    nodes, ranks = _nodes(m), _ranks(m)
    _drop_impossible(m, bandwidth.ceiling(instance))
    test = decide.last_complete_test(m)
    peak = max((bandwidth.busbw_of(r) or 0.0 for r in test.rows), default=None) if test else None

    checks: list[Check] = [
        Check("transport", _status(net.value, "libfabric"), True,
              f"transport {net.value or 'unknown'}: {net.reason}", net.evidence),
    ]
    expected = opts.expect_provider
    observed = prov.value.split(";")[0] if prov.value else None
    if observed and expected == "efa" and is_efa_provider(observed):
        observed = "efa"  # efa-direct is the same device
    prov_ev = prov.evidence
    named = decide.efa_named(m)
    if observed is None and efa.value and expected == "efa" and named:
        observed, prov_ev = "efa", named  # a line that names efa, not a GDRDMA channel line
    said = prov.value or (f"{observed} (no 'Selected provider' line; named by the lines "
                          "cited)" if observed else "unknown")
    checks.append(Check("provider", _status(observed, expected) if observed else "unknown", True,
                        f"provider {said} (expected {expected})", prov_ev))
    if expected == "efa":
        checks.append(Check("efa_used", _status(efa.value), True,
                            f"EFA used: {_word(efa.value)}: {efa.reason}", efa.evidence))
    else:
        checks.append(Check("efa_used", "skip", True,
                            f"--expect-provider {expected}: EFA is not expected", efa.evidence))
    if instance is not None and not instance.gdr_capable:
        checks.append(Check("gdr_used", "skip", True,
                            f"{instance.name} has no GPUDirect RDMA: {_word(gdr.value)}",
                            gdr.evidence))
    elif gdr.value and directions["send"] is False and instance is not None and \
            instance.gdr_both_directions:
        checks.append(Check("gdr_used", "fail", True,
                            f"GPUDirect RDMA on [receive] only: [send] connections show no "
                            f"/GDRDMA, but on {instance.name} both directions should use it "
                            f"({instance.gdr_both_reason}); is NCCL_NET_GDR_READ=0 set?",
                            gdr.evidence))
    else:
        checks.append(Check("gdr_used", _status(gdr.value), True,
                            f"GPUDirect RDMA used: {_word(gdr.value)}: {gdr.reason}",
                            gdr.evidence))
    if len(nccl_versions) > 1:
        checks.append(Check("nccl_version", "fail", True,
                            "ranks run different NCCL versions: "
                            + ", ".join(sorted(nccl_versions)),
                            [e for v in nccl_versions
                             for e in m.facts["nccl_version"].first(v)[:1]]))
    elif nccl_version:
        checks.append(Check("nccl_version", "pass", True, f"one NCCL version: {nccl_version}",
                            m.facts["nccl_version"].first(nccl_version)[:1]))
    elif m.facts.get("nccl_version_in_error"):  # no version line: torch's error message
        nccl_version = m.facts["nccl_version_in_error"].values.most_common(1)[0][0]
        checks.append(Check("nccl_version", "pass", True, f"NCCL version {nccl_version}, as "
                            "torch's error message reports it (no NCCL version line)",
                            m.facts["nccl_version_in_error"].first(nccl_version)[:1]))
    else:
        checks.append(Check("nccl_version", "skip", True, "no NCCL version line"))
    wrong = decide.wrong_values(test)
    test_errors = [e for e in m.errors if e.kind in ("wrong_values", "out_of_bounds")]
    if test is None:
        checks.append(Check("nccl_tests", "skip", True, "no nccl-tests results in the input"))
    elif not test.data_checked and not test_errors:
        checks.append(Check("nccl_tests", "skip", True, "nccl-tests did not check its results "
                            "(-c 0: #wrong is N/A), so wrong values are unknown",
                            [Evidence(test.file, test.rows[-1]["line"], None,
                                      f"size {test.rows[-1]['size']} B #wrong N/A")]))
    elif test_errors or (wrong or 0) > 0:
        checks.append(Check("nccl_tests", "fail", True, "nccl-tests reports wrong values",
                            [e.evidence for e in test_errors][:4]))
    else:
        checks.append(Check("nccl_tests", "pass", True, "no wrong values",
                            [test.oob_evidence] if test.oob_evidence else []))
    # Where the log names no nodes, the bandwidth expectation takes the user's count.
    bw_nodes = opts.expect_nodes if nodes is None else nodes
    checks.extend(_bandwidth_checks(m, opts, instance, bw_nodes, ranks))
    errors = [e for e in m.errors if e.severity == "error"]
    checks.append(Check("errors", "fail" if errors else "pass", True,
                        _errors_message(errors), [e.evidence for e in errors][:4]))
    if opts.expect_nodes is not None:
        status = "unknown" if nodes is None else _status(nodes, opts.expect_nodes)
        checks.append(Check("nodes", status, True,
                            f"{nodes if nodes is not None else 'unknown'} NCCL node(s), "
                            f"expected {opts.expect_nodes}", m.fact("nnodes").all_evidence()))
    checks = _causes_first([*_unread(checks, inputs), *more_checks])
    word, reason = checkmod.decide(policy, checks)
    if not decide.has_nccl_lines(m) and not any(c.status == "fail" for c in more_checks):
        word, reason = "inconclusive", decide.NO_NCCL_LINES
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": checkmod.tool(command),
        "inputs": inputs,
        "instance": {"name": instance.name, "source": instance_source} if instance else None,
        "expect": {"provider": expected, "nodes": opts.expect_nodes},
        "verdict": word,
        "verdict_reason": reason,
        "transport": net.value,
        "provider": prov.value,
        "efa_used": efa.value,
        "gdr_used": gdr.value,
        "gdr_directions": directions,
        "plugin_version": plugin_version,
        "nccl_version": nccl_version,
        "libfabric_version": libfabric_version,
        "nodes": nodes,
        "ranks": ranks,
        "busbw_avg_GBps": test.avg_busbw if test else None,
        "busbw_peak_GBps": peak,
        "wrong_values": wrong,
        "tests": _tests(m),
        "errors": [e.as_dict() for e in m.errors],
        "errors_dropped": m.errors_dropped,
        "checks": [c.as_dict() for c in checks],
        "findings": {"transport": net.as_dict(), "provider": prov.as_dict(),
                     "efa_used": efa.as_dict(), "gdr_used": gdr.as_dict()},
        "ranks_detail": _rank_details(m, prov),
    }


def _direction_gdr(directions: Counter, direction: str) -> bool | None:
    """Whether a rank's NET connections of one direction all show /GDRDMA (None: none)."""
    if not directions[(direction, True)] + directions[(direction, False)]:
        return None
    return not directions[(direction, False)]


def _word(value: object) -> str:
    return {True: "yes", False: "no", None: "unknown"}[value]  # type: ignore[index]
