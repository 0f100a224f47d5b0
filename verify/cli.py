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

if __name__ == "__main__":
    main()
