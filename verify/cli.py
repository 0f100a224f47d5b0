"""`efa-verify`: the in-container verifier's command line."""

from __future__ import annotations

import os

import click

from verify import __version__
from verify.cliutil import CliError, handle_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="efa-verify")
def main() -> None:
    """Prove that NCCL in this image really uses EFA and GPUDirect RDMA.

    Exit status: 0 pass, 1 fail, 2 usage or input error, 3 inconclusive
    (the README lists every code).
    """


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
    for line in startenv.describe(start):
        click.echo(line, err=True)
    if as_shell:
        for line in startenv.shell_lines(start):
            click.echo(line)

def _instance(text: str | None):
    from verify.profiles import resolve

    return resolve(text) if text else None


@main.command()
@click.argument("paths", nargs=-1, required=True)
@report_options
@click.option("--instance-type", default=None,
              help="p4d, p4d.24xlarge or ml.p4d.24xlarge: sets GDR and bandwidth expectations.")
@click.option("--expect-nodes", type=click.IntRange(min=1), default=None,
              help="Fail unless the job spans this many NCCL nodes.")
@click.option("--expect-provider", default="efa", show_default=True,
              help="The libfabric provider the job should use.")
@handle_errors("efa-verify")
def parse(paths: tuple[str, ...], as_json: bool, json_file: str | None, junit_file: str | None,
          markdown_file: str | None, instance_type: str | None, expect_nodes: int | None,
          expect_provider: str, policy_file: str | None) -> None:
    """Decide from NCCL_DEBUG=INFO logs whether EFA and GPUDirect RDMA were really used.

    PATHS are files, directories of per-rank logs, - for stdin, or .gz files.
    """
    from verify.logparse.result import Options, build, parse_sources
    from verify.logparse.sources import SourceError, expand
    from verify.policy import PolicyError, load_policy

    try:
        policy = load_policy(policy_file)
        instance = _instance(instance_type)
        sources = expand(list(paths))
        model, inputs = parse_sources(sources)
    except (SourceError, PolicyError) as exc:
        raise CliError(str(exc)) from None
    options = Options(instance, "--instance-type" if instance else None, expect_nodes,
                      expect_provider.strip().lower())
    result = build(model, inputs, options, policy)
    _emit(result, as_json, json_file, junit_file, markdown_file)


@main.command()
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False),
              help="Check this directory tree as the image's root (commands run only for /).")
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
    from verify.logparse.result import checks_result
    from verify.policy import PolicyError, load_policy
    from verify.static import Image, static_checks

    root_path = Path(root)
    record_path = image_env or str(root_path / startenv.IMAGE_ENV.lstrip("/"))
    try:
        record = startenv.load_image_env(record_path)
        policy = load_policy(policy_file)
    except (ValueError, PolicyError) as exc:
        raise CliError(str(exc)) from None
    image = Image(root_path, record, dict(os.environ), _instance(instance_type))
    checks = static_checks(image, execute=root_path.resolve() == Path("/"))
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
    from verify.logparse.result import checks_result
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
    profile = _instance(instance_type)
    detection = detect.Detection(profile, "--instance-type", instance_type or "") if profile \
        else detect.detect()
    host = Host(sys=Path(sysfs), dev=Path(devfs), proc=Path("/proc"), shm=Path("/dev/shm"))
    checks = preflight_checks(host, detection, cuda)
    _emit(checks_result("preflight", checks, policy, detection.profile), as_json, json_file,
          junit_file, markdown_file)


def _emit(result: dict, as_json: bool, json_file: str | None, junit_file: str | None,
          markdown_file: str | None) -> None:
    """Write the requested reports atomically, print, and exit with the verdict's code."""
    import sys

    from verify import report

    text = report.to_json(result)
    for target, body in ((json_file, text), (junit_file, report.to_junit(result)),
                         (markdown_file, report.to_markdown(result))):
        if target:
            try:
                report.write_atomic(target, body)
            except OSError as exc:
                raise CliError(f"cannot write {target}: {exc.strerror}") from None
    click.echo(text if as_json else report.to_table(result), nl=False)
    sys.exit(int(report.VERDICT_EXIT[result["verdict"]]))


if __name__ == "__main__":
    main()
