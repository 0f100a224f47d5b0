"""`efa-verify sweep`: the command line over verify/sweep/logic.py, real or simulated."""

from __future__ import annotations

import os
import re
import sys
import time

import click

from verify.boundary.values import BadValue, Count, count, digits
from verify.cliutil import (
    CliError,
    handle_errors,
    instance_profile,
    nccl_tests_options,
    provider_name,
    timeout_options,
)
from verify.run.hosts import MAX_SLOTS, MAX_SLURM_HOSTS
from verify.run.options import launcher_options


def _faults(specs: tuple[str, ...], nodes: list[str], seed: int) -> list:
    from verify.sweep.sim import LINK_FAULTS, NODE_FAULTS, inject

    mix: dict[str, int] = {}
    for spec in specs:
        kind, _, count = spec.partition(":")
        if kind not in NODE_FAULTS + LINK_FAULTS:
            raise CliError(f"--fault {spec}: unknown fault kind {kind!r}; known: "
                           f"{', '.join(NODE_FAULTS + LINK_FAULTS)}")
        try:
            number = digits(count or "1", f"--fault {spec}", 1, len(nodes))
        except BadValue as exc:
            raise CliError(f"{exc}: the count must be a positive integer") from None
        mix[kind] = mix.get(kind, 0) + number
    wanted = sum(n * (2 if k in LINK_FAULTS else 1) for k, n in mix.items())
    if wanted > len(nodes):
        raise CliError(f"--fault: {wanted} faulty nodes asked of {len(nodes)} nodes")
    return inject(nodes, mix, seed)


ASCII_COUNT = re.compile(r"[0-9]{1,9}")
# Coverage rounds a sweep may be asked for: the circle method pairs every two of N
# nodes once in N-1 rounds, so more than the largest host list adds nothing.
MAX_ROUNDS = MAX_SLURM_HOSTS - 1


def check_allocation(plan, env: dict[str, str]) -> None:
    """A Slurm node list longer than the job's node count is a wrong list, not a bigger job."""
    allocated = env.get("SLURM_JOB_NUM_NODES")  # the job's; SLURM_NNODES is the step's
    if plan.source.startswith("slurm") and allocated and ASCII_COUNT.fullmatch(allocated) \
            and len(plan.hosts) > int(allocated):
        raise CliError(f"SLURM_JOB_NODELIST expands to {len(plan.hosts)} nodes but the job "
                       f"has {allocated} (SLURM_JOB_NUM_NODES)")


def check_inputs(json_file: str | None, policy_file: str | None, hostfile: str | None,
                 hosts: str | None, instance_type: str | None, gpus_per_host: int) -> None:
    """Before any work, simulated or real: -o is never one of the inputs (attack-2
    D-3/D-4 overwrote --policy and --hostfile), every --hosts entry is a host name
    (`a,b,$(id)` was carried into a simulated report unchecked), and the ranks per node
    fit the instance's GPUs, as `efakit launch` requires."""
    from verify.boundary.files import SameFileError, refuse_overlap
    from verify.run.hosts import HostsError, parse_hosts

    if hosts is not None:
        try:
            parse_hosts(hosts)
        except HostsError as exc:
            raise CliError(str(exc)) from None

    try:
        refuse_overlap([("--output", json_file)], [policy_file, hostfile])
    except SameFileError as exc:
        raise CliError(str(exc)) from None
    instance = instance_profile(instance_type)
    if instance is not None and instance.gpu_count:
        try:
            count(str(gpus_per_host), "--gpus-per-host", instance.gpu_count)
        except BadValue as exc:
            raise CliError(f"{exc} ({instance.name} has {instance.gpu_count} GPUs)") from None


@click.command("sweep")
@click.option("--hosts", default=None, metavar="H1,H2,...",
              help="Nodes to sweep (default: --hostfile, SageMaker, Slurm's node list).")
@click.option("--hostfile", default=None, metavar="FILE", help="Open MPI hostfile.")
@click.option("--gpus-per-host", type=Count(MAX_SLOTS), default=1, show_default=True,
              help="Ranks per node in each run.")
@click.option("--instance-type", default=None, help="p5, p5.48xlarge, ml.p5.48xlarge...")
@click.option("--expect-provider", default="efa", show_default=True, callback=provider_name)
@nccl_tests_options
@click.option("--output-dir", default=None, metavar="DIR",
              help="New or empty directory: one run directory per node check and pair.")
@click.option("--rounds", "coverage", type=Count(MAX_ROUNDS), default=None,
              help="Coverage rounds (default from verify/data/sweep.yaml); more covers more "
                   "links.")
@click.option("--parallel", type=Count(MAX_SLURM_HOSTS), default=None,
              help="Runs started at once (default from verify/data/sweep.yaml).")
@timeout_options("Each run", "verify/data/sweep.yaml")
@launcher_options
@click.option("--simulate", is_flag=True,
              help="Sweep a simulated fabric instead of real nodes (see --nodes, --fault).")
@click.option("--nodes", type=Count(MAX_SLURM_HOSTS, low=0), default=None,
              help=f"With --simulate: how many nodes (at most {MAX_SLURM_HOSTS}, as "
                   "efakit launch).")
@click.option("--fault", "faults", multiple=True, metavar="KIND[:COUNT]",
              help="With --simulate: inject socket, no_gdr, slow_nic, hang, gpu, bad_link "
                   "or flapping_link faults at random.")
@click.option("--seed", type=Count(2**63, low=0), default=0, show_default=True,
              help="Pairing order (and, simulated, fault placement and noise).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
@click.option("--output", "-o", "json_file", default=None, metavar="FILE",
              help="Also write the JSON report to FILE.")
@click.option("--policy", "policy_file", default=None, metavar="FILE",
              help="Required checks and waivers for every run.")
@click.option("--sysfs", default="/sys", show_default=True, hidden=True)
@handle_errors("efa-verify")
def sweep(hosts: str | None, hostfile: str | None, gpus_per_host: int,
          instance_type: str | None, expect_provider: str, test_name: str,
          tests_dir: str | None, output_dir: str | None, coverage: int | None,
          parallel: int | None, timeout: float | None, stall_timeout: float | None,
          simulate: bool, nodes: int | None, faults: tuple[str, ...], seed: int,
          as_json: bool, json_file: str | None, policy_file: str | None, sysfs: str,
          launcher: str, srun_mpi: str, ready_timeout: float | None) -> None:
    """Find the bad nodes and links: node checks, then rounds of disjoint 2-node runs.

    Prints a per-node table, the accused nodes and links with their evidence
    lines, and an exclude list for sbatch --exclude= or kubectl cordon.
    Exit 0 when nothing is accused, 1 when something is, 3 when a node
    could not be settled.
    """
    from verify import report
    from verify.exitcodes import Exit
    from verify.sweep.logic import Sweep, SweepError
    from verify.sweep.report import build, to_text

    def progress(line: str) -> None:
        click.echo(f"sweep: {line}", err=True)

    check_inputs(json_file, policy_file, hostfile, hosts, instance_type, gpus_per_host)
    start = time.monotonic()
    try:
        if simulate:
            runner, names, source, extra = _simulated(nodes, faults, seed)
        else:
            if nodes is not None or faults:
                raise CliError("--nodes and --fault go with --simulate")
            runner, names, source, extra = _real(
                hosts, hostfile, gpus_per_host, instance_type, expect_provider, test_name,
                tests_dir, output_dir, parallel, timeout, stall_timeout, policy_file, sysfs,
                (launcher, srun_mpi, ready_timeout))
        result = Sweep(names, runner, coverage, seed=seed, progress=progress).run()
    except SweepError as exc:
        raise CliError(str(exc)) from None
    interrupted = extra.pop("_interrupted", None)
    if simulate:
        from verify.sweep.sim import modelled_seconds, score

        extra["simulation"]["modelled_wall_s"] = round(modelled_seconds(result.rounds), 1)
        extra["simulation"]["score"] = score(result.bad_nodes, result.bad_links,
                                             set(result.trials), extra.pop("_faults"))
    else:
        extra["wall_s"] = round(time.monotonic() - start, 3)
    doc = build(result, source, "simulate" if simulate else "real", extra)
    text = report.to_json(doc)
    for target in ([json_file] if json_file else []) + (
            [os.path.join(extra["output_dir"], "sweep.json")] if not simulate else []):
        try:
            report.write_atomic(target, text)
        except OSError as exc:
            raise CliError(f"cannot write {target}: {exc.strerror}") from None
    click.echo(text if as_json else to_text(doc), nl=False)
    if interrupted is not None and interrupted.is_set():
        sys.exit(int(Exit.INTERRUPTED))
    sys.exit(int(report.VERDICT_EXIT[doc["verdict"]]))


def _simulated(nodes: int | None, faults: tuple[str, ...], seed: int):
    from verify.sweep.sim import SimulatedFabric, node_names

    if nodes is None:
        raise CliError("--simulate needs --nodes N")
    if nodes < 2:
        raise CliError(f"sweep: needs at least 2 nodes, got {nodes}")
    names = node_names(nodes)
    injected = _faults(faults, names, seed)
    extra = {"simulation": {"faults": [{"kind": f.kind, "where": list(f.where)}
                                       for f in injected], "seed": seed},
             "_faults": injected}
    return SimulatedFabric(injected, seed), names, f"--simulate --nodes {nodes}", extra


def _real(hosts, hostfile, gpus_per_host, instance_type, expect_provider, test_name,
          tests_dir, output_dir, parallel, timeout, stall_timeout, policy_file, sysfs,
          launch):
    import signal
    import threading
    from pathlib import Path

    from verify import detect
    from verify.logparse.result import Options
    from verify.policy import PolicyError, load_policy
    from verify.run import hosts as hostmod
    from verify.run import job as runjob
    from verify.sweep.runner import MpiRunner

    env = dict(os.environ)
    instance = instance_profile(instance_type)
    try:
        policy = load_policy(policy_file)
        plan = hostmod.resolve_hosts(hosts, hostfile, env, os.environ.get(
            "EFAKIT_SM_RESOURCE_CONFIG", detect.SM_RESOURCE_CONFIG))
        check_allocation(plan, env)
        if len(plan.hosts) < 2:
            raise CliError(f"sweep: needs at least 2 nodes, got {len(plan.hosts)} "
                           f"({plan.source})")
        launcher, srun_mpi, ready_timeout = launch
        probe = runjob.RunOptions(plan, gpus_per_host, "", Path("."), launcher=launcher,
                                  ready_timeout=ready_timeout)
        runjob.find_launcher(probe)
        runjob.wait_ready(probe)  # once for the sweep (not per pair), before any file
        outdir = runjob.prepare_outdir(Path(output_dir or time.strftime(
            "efa-verify-sweep-%Y%m%d-%H%M%S")))
    except (PolicyError, hostmod.HostsError) as exc:
        raise CliError(str(exc)) from None
    except runjob.RunSetupError as exc:
        from verify.exitcodes import Exit

        raise CliError(str(exc), Exit.NO_ENGINE if exc.missing_tool else Exit.USAGE) from None
    (outdir / "logs").rmdir()  # each run makes its own directory under this one
    interrupted = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: interrupted.set())
    options = Options(instance, "--instance-type" if instance else None, None,
                      expect_provider.strip().lower())
    template = runjob.RunOptions(plan, gpus_per_host, "--gpus-per-host", outdir,
                                 "nccl-tests", test_name, "quick", options, timeout,
                                 stall_timeout, sysfs, tests_dir, interrupted,
                                 launcher=launcher, srun_mpi=srun_mpi)
    runner = MpiRunner(template, policy, env, parallel)
    extra = {"output_dir": str(outdir), "_interrupted": interrupted}
    return runner, plan.names(), plan.source, extra
