"""`efa-verify`: the in-container verifier's command line."""

from __future__ import annotations

import functools
import os

import click

from verify import __version__
from verify.boundary.emit import to_stdout
from verify.boundary.values import (
    MAX_GPUS_PER_HOST,
    MAX_NODES,
    MAX_SECONDS,
    Count,
    Finite,
    printable,
)
from verify.cliutil import (
    CliError,
    OneLineGroup,
    handle_errors,
    instance_profile,
    nccl_tests_options,
    provider_name,
    timeout_options,
)
from verify.run.options import launcher_options


@click.group("efa-verify", cls=OneLineGroup,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="efa-verify")
def main() -> None:
    """Prove that NCCL in this image really uses EFA and GPUDirect RDMA.

    Exit status: 0 pass, 1 fail, 2 usage or input error, 3 inconclusive
    (the README lists every code).
    """


# The report outputs (option, keyword) and the keywords that name input files.
REPORT_OUTPUTS = (("-o", "json_file"), ("--junit", "junit_file"), ("--markdown", "markdown_file"))
INPUT_KEYWORDS = ("paths", "policy_file", "image_env", "hostfile", "baseline_spec")


def _inputs(kwargs: dict) -> list[str]:
    """Every file a checking command reads, directories of logs expanded as parse reads
    them, a baseline by name found where `--baseline` finds it."""
    from pathlib import Path

    from verify.baseline import locate

    found: list[str] = []
    for key in INPUT_KEYWORDS:
        given = kwargs.get(key)
        for text in (given if isinstance(given, tuple) else (given,)):
            if not text:
                continue
            if key == "baseline_spec":
                found.append(str(locate(text)))
            elif os.path.isdir(text):
                found += [str(p) for p in Path(text).rglob("*") if p.is_file()]
            else:
                found.append(text)
    return found


def report_options(func):
    """--json, -o, --junit, --markdown and --policy: the same on every checking command."""
    options = [
        click.option("--json", "as_json", is_flag=True,
                     help="Print the JSON result instead of a table."),
        click.option("--output", "-o", "json_file", default=None, metavar="FILE",
                     help="Also write the JSON result to FILE."),
        click.option("--junit", "junit_file", default=None, metavar="FILE",
                     help="Write JUnit XML."),
        click.option("--markdown", "markdown_file", default=None, metavar="FILE",
                     help="Write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)."),
        click.option("--policy", "policy_file", default=None, metavar="FILE",
                     help="Required checks and waivers (default: everything required)."),
    ]
    command = func

    @functools.wraps(command)
    def distinct_targets(**kwargs):
        # Before any work: an output that is an input (`parse in.log -o in.log`) or another
        # output would be replaced after the run, the input lost.
        from verify.boundary.files import SameFileError, refuse_overlap

        try:
            refuse_overlap([(name, kwargs.get(key)) for name, key in REPORT_OUTPUTS],
                           _inputs(kwargs))
        except SameFileError as exc:
            raise click.UsageError(str(exc)) from None
        return command(**kwargs)

    func = distinct_targets
    for option in reversed(options):
        func = option(func)
    return func


@main.command("env")
@click.option("--shell", "as_shell", is_flag=True,
              help="Print export/unset lines for the entrypoint to eval.")
@click.option("--image-env", default=None, metavar="PATH",
              help="The image's env record (default /etc/efakit/image-env.json).")
@click.option("--instance-type", default=None,
              help="Skip detection: p5, p5.48xlarge or ml.p5.48xlarge.")
@handle_errors("efa-verify")
def env_cmd(as_shell: bool, image_env: str | None, instance_type: str | None) -> None:
    """Apply the instance-specific env rules (the image's start-time step)."""
    from verify import detect, startenv
    from verify.profiles import resolve

    path = image_env or os.environ.get("EFAKIT_IMAGE_ENV", startenv.IMAGE_ENV)
    try:
        record = startenv.load_image_env(path)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if instance_type:
        detection = detect.Detection(resolve(instance_type), "--instance-type", instance_type)
    else:
        detection = detect.detect()
    start = startenv.plan(record, detection, os.environ)
    # Silent unless something changed: every container start runs this.
    for line in startenv.describe(start, os.environ.get("EFAKIT_VERBOSE") == "1"):
        click.echo(printable(line), err=True)
    if as_shell:
        # raw: click would strip escape sequences from the quoted values when stdout
        # is no terminal, and export something else than the record
        to_stdout("".join(f"{line}\n" for line in startenv.shell_lines(start)))

def baseline_options(func):
    """--baseline and --baseline-tolerance: the same on parse and run."""
    from verify.baseline import DEFAULT_TOLERANCE

    func = click.option("--baseline-tolerance", "tolerance", type=Finite(0, 0.99),
                        default=DEFAULT_TOLERANCE, show_default=True,
                        help="How far below the baseline a size may fall (0.10 = 10%).")(func)
    return click.option("--baseline", "baseline_spec", default=None, metavar="NAME|FILE",
                        help="Compare busbw size by size with a site baseline "
                             "(efa-verify baseline record).")(func)


def _baseline(spec: str | None, tolerance: float):
    from verify.baseline import BaselineError, load

    if spec is None:
        return None
    try:
        return load(spec, tolerance)
    except BaselineError as exc:
        raise CliError(str(exc)) from None


@main.command()
@click.argument("paths", nargs=-1, required=True)
@report_options
@click.option("--instance-type", default=None,
              help="p4d, p4d.24xlarge or ml.p4d.24xlarge: sets GDR and bandwidth expectations.")
@click.option("--expect-nodes", type=Count(MAX_NODES), default=None,
              help="Fail unless the job spans this many NCCL nodes.")
@click.option("--expect-provider", default="efa", show_default=True, callback=provider_name,
              help="The libfabric provider the job should use.")
@baseline_options
@handle_errors("efa-verify")
def parse(paths: tuple[str, ...], as_json: bool, json_file: str | None, junit_file: str | None,
          markdown_file: str | None, instance_type: str | None, expect_nodes: int | None,
          expect_provider: str, policy_file: str | None, baseline_spec: str | None,
          tolerance: float) -> None:
    """Decide from NCCL_DEBUG=INFO logs whether EFA and GPUDirect RDMA were really used.

    PATHS are files, directories of per-rank logs, - for stdin, or .gz files.
    """
    from verify.logparse.result import Options, build, parse_sources
    from verify.logparse.sources import SourceError, expand
    from verify.policy import PolicyError, load_policy

    try:
        policy = load_policy(policy_file)
        instance = instance_profile(instance_type)
        base = _baseline(baseline_spec, tolerance)
        sources = expand(list(paths))
        model, inputs = parse_sources(sources)
    except (SourceError, PolicyError) as exc:
        raise CliError(str(exc)) from None
    options = Options(instance, "--instance-type" if instance else None, expect_nodes,
                      expect_provider.strip().lower(), baseline=base)
    result = build(model, inputs, options, policy)
    _emit(result, as_json, json_file, junit_file, markdown_file)


@main.command()
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False),
              help="Check this directory tree as the image's root (commands run only for /). "
                   "Every path is resolved inside it, links and '..' included. The environment "
                   "judged is this shell's for /, and for any other root the image's own as "
                   "its env record states it (start defaults, then its ENV).")
@click.option("--image-env", default=None, metavar="PATH",
              help="The image's env record (default <root>/etc/efakit/image-env.json).")
@click.option("--instance-type", default=None, help="Check the env for this instance only.")
@report_options
@handle_errors("efa-verify")
def static(root: str, image_env: str | None, instance_type: str | None, as_json: bool,
           json_file: str | None, junit_file: str | None, markdown_file: str | None,
           policy_file: str | None) -> None:
    """Check an image without GPU or EFA: libraries, plugin, versions, env, MPI, ssh."""
    from pathlib import Path

    from verify import startenv
    from verify.checks import checks_result
    from verify.elf import ElfError
    from verify.policy import PolicyError, load_policy
    from verify.static import Image, declared_environ, static_checks

    root_path = Path(root)
    record_path = image_env or str(root_path / startenv.IMAGE_ENV.lstrip("/"))
    try:
        record = startenv.load_image_env(record_path)
        policy = load_policy(policy_file)
    except (ValueError, PolicyError) as exc:
        raise CliError(str(exc)) from None
    in_image = root_path.resolve() == Path("/")
    environ = dict(os.environ) if in_image else declared_environ(record)
    image = Image(root_path, record, environ, instance_profile(instance_type))
    try:
        checks = static_checks(image, execute=in_image)
    except ElfError as exc:  # a library that is no regular file, or no ELF file
        raise CliError(str(exc)) from None
    result = checks_result("static", checks, policy, image.instance,
                           {"nccl_version": record["versions"].get("nccl"),
                            "plugin_version": record["versions"].get("aws_ofi_nccl"),
                            "libfabric_version": record["versions"].get("libfabric")})
    _emit(result, as_json, json_file, junit_file, markdown_file)


@main.command()
@click.option("--instance-type", default=None,
              help="p5, p5.48xlarge or ml.p5.48xlarge (default: detect).")
@click.option("--image-env", default=None, metavar="PATH",
              help="The image's env record, for its CUDA version.")
@click.option("--sysfs", "sysfs", default="/sys", show_default=True, hidden=True)
@click.option("--devfs", "devfs", default="/dev", show_default=True, hidden=True)
@report_options
@handle_errors("efa-verify")
def preflight(instance_type: str | None, image_env: str | None, sysfs: str, devfs: str,
              as_json: bool, json_file: str | None, junit_file: str | None,
              markdown_file: str | None, policy_file: str | None) -> None:
    """On the GPU host: GPUs via NVML, EFA devices, GPUDirect support, memlock, /dev/shm."""
    from pathlib import Path

    from verify import detect, startenv
    from verify.checks import checks_result
    from verify.policy import PolicyError, load_policy
    from verify.preflight import Host, preflight_checks

    try:
        policy = load_policy(policy_file)
    except PolicyError as exc:
        raise CliError(str(exc)) from None
    cuda = None
    record_path = Path(image_env or startenv.IMAGE_ENV)
    if record_path.exists():
        try:
            cuda = startenv.load_image_env(record_path)["versions"].get("cuda")
        except ValueError as exc:
            raise CliError(str(exc)) from None
    profile = instance_profile(instance_type)
    detection = detect.Detection(profile, "--instance-type", instance_type or "") if profile \
        else detect.detect()
    host = Host(sys=Path(sysfs), dev=Path(devfs), proc=Path("/proc"), shm=Path("/dev/shm"))
    checks = preflight_checks(host, detection, cuda)
    _emit(checks_result("preflight", checks, policy, detection.profile), as_json, json_file,
          junit_file, markdown_file)


@main.command()
@click.option("--hosts", default=None, metavar="H1[:N],H2[:N]",
              help="Hosts to span (default: --hostfile, SageMaker, Slurm, or this host).")
@click.option("--hostfile", default=None, metavar="FILE", help="Open MPI hostfile.")
@click.option("--gpus-per-host", type=Count(MAX_GPUS_PER_HOST), default=None,
              help="Ranks per host (default: the GPUs NVML sees here).")
@click.option("--instance-type", default=None, help="p4d, p5.48xlarge, ml.p5.48xlarge...")
@click.option("--expect-provider", default="efa", show_default=True, callback=provider_name)
@click.option("--expect-nodes", type=Count(MAX_NODES), default=None,
              help="Fail unless NCCL saw this many nodes (one GPU per node with NCCL_HOSTID "
                   "gives more NCCL nodes than hosts).")
@nccl_tests_options
@click.option("--quick/--full", default=True, show_default=True,
              help="A short sweep to 1 GiB, or 8 B to 8 GiB.")
@click.option("--engine", default="nccl-tests", show_default=True,
              type=click.Choice(["nccl-tests", "torch"]),
              help="torch: torch.distributed all_reduce via torchrun, for images "
                   "without nccl-tests.")
@click.option("--output-dir", default=None, metavar="DIR",
              help="New or empty directory for logs and reports "
                   "(default ./efa-verify-run-<time>).")
@timeout_options("The run", "verify/data/run.yaml")
@launcher_options
@click.option("--sysfs", default="/sys", show_default=True, hidden=True)
@report_options
@baseline_options
@handle_errors("efa-verify")
def run(hosts: str | None, hostfile: str | None, gpus_per_host: int | None,
        instance_type: str | None, expect_provider: str, expect_nodes: int | None,
        test_name: str, quick: bool,
        engine: str, output_dir: str | None, timeout: float | None, stall_timeout: float | None,
        tests_dir: str | None, sysfs: str, as_json: bool, json_file: str | None,
        junit_file: str | None, markdown_file: str | None, policy_file: str | None,
        baseline_spec: str | None, tolerance: float, launcher: str, srun_mpi: str,
        ready_timeout: float | None) -> None:
    """Run nccl-tests over MPI across hosts and decide from its logs and EFA counters.

    Every stage has a timeout and a progress watch; on a hang the process tree
    is killed on every host and the verdict is fail naming the silent ranks.
    SIGINT/SIGTERM stop the run and still write the report (exit 130).
    """
    import signal
    import time
    from pathlib import Path

    from verify import detect, report
    from verify.boundary.files import write_atomic
    from verify.exitcodes import Exit
    from verify.logparse.result import Options
    from verify.policy import PolicyError, load_policy
    from verify.run import hosts as hostmod
    from verify.run import job as runjob

    try:
        policy = load_policy(policy_file)
        plan = hostmod.resolve_hosts(hosts, hostfile, dict(os.environ),
                                     os.environ.get("EFAKIT_SM_RESOURCE_CONFIG",
                                                    detect.SM_RESOURCE_CONFIG))
        outdir = runjob.check_outdir(Path(output_dir or time.strftime(
            "efa-verify-run-%Y%m%d-%H%M%S")))  # created once the preconditions pass
    except (PolicyError, hostmod.HostsError, runjob.RunSetupError) as exc:
        raise CliError(str(exc)) from None
    base = _baseline(baseline_spec, tolerance)
    gpus, gpus_source = _gpus_per_host(gpus_per_host)
    instance = instance_profile(instance_type)
    options = Options(instance, "--instance-type" if instance else None, expect_nodes,
                      expect_provider.strip().lower(), test_name, base)
    opts = runjob.RunOptions(plan, gpus, gpus_source, outdir, engine, test_name,
                             "quick" if quick else "full", options, timeout, stall_timeout,
                             sysfs, tests_dir, launcher=launcher, srun_mpi=srun_mpi,
                             ready_timeout=ready_timeout)
    handlers = {sig: signal.signal(sig, lambda *_: opts.interrupted.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = runjob.execute(opts, policy, dict(os.environ))
    except runjob.RunSetupError as exc:
        raise CliError(str(exc), Exit.NO_ENGINE if exc.missing_tool else Exit.USAGE) from None
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    for name, render in (("result.json", report.to_json), ("result.xml", report.to_junit),
                         ("result.md", report.to_markdown)):
        write_atomic(outdir / name, render(result))
    _emit(result, as_json, json_file, junit_file, markdown_file,
          int(Exit.INTERRUPTED) if opts.interrupted.is_set() else None)


def _gpus_per_host(given: int | None) -> tuple[int, str]:
    """Ranks per host: --gpus-per-host, else NVML's count here, else one (and say why)."""
    from verify.preflight import nvml_inventory

    if given:
        return given, "--gpus-per-host"
    inventory = nvml_inventory()
    if isinstance(inventory, str) or inventory.count == 0:
        why = inventory if isinstance(inventory, str) else "NVML sees no GPU"
        return 1, f"one rank per host: {why}"
    return inventory.count, f"NVML on the launching host ({inventory.count} GPUs)"


@main.group()
def baseline() -> None:
    """Site baselines: keep a known-good run's busbw curve to judge later runs against."""


@baseline.command("record")
@click.argument("result_file", metavar="RESULT.json", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The baseline's name (letters, digits, . _ -).")
@click.option("--dir", "directory", default=None, metavar="DIR",
              help="Where baselines live (default $EFA_VERIFY_BASELINES, else "
                   "~/.local/share/efa-verify/baselines).")
@handle_errors("efa-verify")
def baseline_record(result_file: str, name: str, directory: str | None) -> None:
    """Keep the busbw curves of a passing RESULT.json as baseline NAME."""
    from pathlib import Path

    from verify.baseline import BaselineError, baseline_dir, record

    try:
        target = record(Path(result_file), name, Path(directory) if directory else baseline_dir())
    except BaselineError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write baseline {name}: {exc.strerror}") from None
    click.echo(str(target))


@main.command("sagemaker")
@click.option("--ssh-timeout", type=Finite(1, MAX_SECONDS), default=300, show_default=True,
              help="Seconds the first host waits for sshd on every host.")
@handle_errors("efa-verify")
def sagemaker_cmd(ssh_timeout: float) -> None:
    """SageMaker mode: every host serves sshd, the first runs `efa-verify run` over all.

    The image's entrypoint runs this for `train` when EFAKIT_SAGEMAKER_VERIFY=1.
    Reports go to /opt/ml/output/data/efa-verify (uploaded to S3 by SageMaker).
    """
    import sys

    from verify import smjob

    try:
        code = smjob.main(ssh_timeout)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    sys.exit(code)


@main.command(hidden=True)
@click.option("--sysfs", default="/sys", show_default=True)
def counters(sysfs: str) -> None:
    """Print this host's RDMA hw_counters as one JSON line (run by `run` on every host)."""
    import json
    from pathlib import Path

    from verify.run.counters import snapshot

    click.echo(json.dumps(snapshot(Path(sysfs)), sort_keys=True))


@main.command(hidden=True)
@click.argument("run_id")
def reap(run_id: str) -> None:
    """Kill this host's processes of one run (called over ssh when a run is stopped)."""
    from verify.run.supervise import reap_local

    click.echo(f"killed {len(reap_local(run_id))} process(es)")


def _emit(result: dict, as_json: bool, json_file: str | None, junit_file: str | None,
          markdown_file: str | None, code: int | None = None) -> None:
    """Write the requested reports atomically, print, and exit (the verdict's code by default)."""
    import sys

    from verify import report
    from verify.boundary.files import write_atomic

    text = report.to_json(result)
    for target, body in ((json_file, text), (junit_file, report.to_junit(result)),
                         (markdown_file, report.to_markdown(result))):
        if target:
            try:
                write_atomic(target, body)  # not an input: refused before the work
            except OSError as exc:
                raise CliError(f"cannot write {target}: {exc.strerror}") from None
    to_stdout(text if as_json else report.to_table(result))
    sys.exit(int(report.VERDICT_EXIT[result["verdict"]]) if code is None else code)


def _add_commands() -> None:
    """Commands that live in their own modules."""
    from verify.sweep.cli import sweep

    main.add_command(sweep)


_add_commands()

if __name__ == "__main__":
    main()
