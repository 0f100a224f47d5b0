"""The real Runner for `efa-verify sweep`: every node check and pair is an `efa-verify run`.

Each run goes through runjob.execute, the same machinery as `efa-verify run`
(mpirun over ssh, the supervisor's stage and stall timeouts, the counters
stages, the parser's verdict), with its own output directory and the sweep's
per-run limits from verify/data/sweep.yaml.  A pair that hangs is stopped and
reaped by the supervisor at its timeout, so it costs one timeout in one round,
never the sweep.  Runs of a round go in parallel threads (each an mpirun).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from verify import report
from verify.policy import Policy
from verify.run import job as runjob
from verify.run.hosts import Host, HostPlan
from verify.sweep.logic import Pair, Trial, table

# The checks of a single-host run that speak about that host alone; its
# transport verdict does not (one host has no network between hosts to use).
NODE_CHECKS = ("gpus", "efa_devices", "benchmark", "rank_logs")


def _stage(result: dict, name: str) -> dict:
    return next((s for s in result["run"]["stages"] if s["name"] == name), {})


def _host_of(rank: int | None, hosts: Sequence[str], per_host: int) -> str | None:
    if rank is None or rank < 0 or rank >= len(hosts) * per_host:
        return None
    return hosts[rank // per_host]


def _launch_failed(result: dict, checks: dict[str, dict], considered: Sequence[str]) -> bool:
    """mpirun failed while some rank never spoke, and nothing the ranks printed failed.

    That is the launcher's failure (a session directory race between parallel
    mpiruns, an ssh hiccup under load), not evidence against either host:
    accusing a node on it would drain a healthy one.
    """
    bench = _stage(result, "benchmark")
    failed = {n for n in considered if checks.get(n, {}).get("status") == "fail"
              and checks[n].get("required", True)}
    return bench.get("ended") == "exited" and bench.get("returncode") != 0 and \
        checks.get("rank_logs", {}).get("status") == "unknown" and failed <= {"benchmark"}


def trial_from(result: dict, hosts: Sequence[str], per_host: int, node_check: bool) -> Trial:
    """A run's JSON result as the sweep sees it (status, busbw, per-host transport and GDR).

    Ranks map to hosts in mpirun's by-slot order: ranks 0..n-1 on the first host.
    A run that proves nothing about its hosts (interrupted, or a launch that
    failed before every rank spoke) is unknown: the sweep pairs the node again
    and never counts it against it.
    """
    checks = {c["name"]: c for c in result["checks"]}
    ended = _stage(result, "benchmark").get("ended")
    if result["run"]["interrupted"] or _launch_failed(
            result, checks, NODE_CHECKS if node_check else list(checks)):
        status = "unknown"
    elif ended in ("timeout", "stalled"):
        status = "hang"
    elif node_check:
        status = "fail" if any(checks.get(n, {}).get("status") == "fail"
                               and checks[n].get("required", True) for n in NODE_CHECKS) \
            else "pass"
    else:
        status = {"pass": "pass", "fail": "fail"}.get(result["verdict"], "unknown")
        undecided = {c["name"] for c in result["checks"]
                     if c["status"] == "unknown" and c.get("required", True)}
        if status == "unknown" and undecided == {"bandwidth"} and \
                result.get("busbw_peak_GBps"):
            # No published figure to hold this pair to: the sweep judges its
            # busbw against the other pairs' (low_outliers) instead.
            status = "pass"
    transport: dict[str, str | None] = {}
    gdr: dict[str, bool | None] = {}
    for rank in result.get("ranks_detail", []):
        host = _host_of(rank["rank"], hosts, per_host)
        if host is None:
            continue
        if rank["transport"] and transport.get(host) != "socket":
            transport[host] = rank["transport"]
        if rank["gdr"] is not None:
            gdr[host] = gdr.get(host, True) and rank["gdr"]
    wanted = [c for c in result["checks"] if c["status"] in ("fail", "unknown")
              and (not node_check or c["name"] in NODE_CHECKS)]
    lines = [e for c in wanted for e in c.get("evidence", [])]
    lines += [{k: e.get(k) for k in ("file", "line", "rank", "message")} for e in
              result.get("errors", []) if e.get("kind") == "hang"]
    evidence = tuple({"file": e["file"], "line": e["line"], "rank": e["rank"],
                      "text": e.get("text", e.get("message", "")),
                      "node": _host_of(e["rank"], hosts, per_host)} for e in lines[:8])
    elapsed = sum(s["elapsed_s"] for s in result["run"]["stages"])
    return Trial(status, result.get("busbw_peak_GBps"), transport, gdr, evidence,
                 result.get("verdict_reason") or "", elapsed)


class MpiRunner:
    """Runner over real hosts: `template` is the RunOptions every run starts from."""

    def __init__(self, template: runjob.RunOptions, policy: Policy, env: dict[str, str],
                 parallel: int | None = None) -> None:
        self.template = template
        self.policy = policy
        self.env = env
        self.parallel = parallel or table()["parallel"]
        self.limits = table()["timeouts"]

    def _run(self, hosts: Sequence[str], outdir: Path, limits: dict,
             node_check: bool) -> Trial:
        opts = dataclasses.replace(
            self.template, plan=HostPlan(tuple(Host(h) for h in hosts), "sweep"),
            outdir=runjob.prepare_outdir(outdir), timeout=self.template.timeout or
            limits["stage"], stall=self.template.stall or limits["stall"])
        result = runjob.execute(opts, self.policy, self.env)
        report.write_atomic(opts.outdir / "result.json", report.to_json(result))
        return trial_from(result, hosts, self.template.gpus_per_host, node_check)

    def _all(self, jobs: dict, limits: dict, node_check: bool) -> dict:
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            futures = {key: pool.submit(self._run, hosts, outdir, limits, node_check)
                       for key, (hosts, outdir) in jobs.items()}
            return {key: future.result() for key, future in futures.items()}

    def node_checks(self, nodes: Sequence[str]) -> dict[str, Trial]:
        base = self.template.outdir / "nodes"
        return self._all({n: ([n], base / n) for n in nodes}, self.limits["node"], True)

    def pairs(self, pairs: Sequence[Pair], round_no: int) -> dict[Pair, Trial]:
        base = self.template.outdir / f"round-{round_no:02d}"
        return self._all({p: (list(p), base / f"{p[0]}+{p[1]}") for p in pairs},
                         self.limits["pair"], False)
