"""`efakit launch slurm|eks`: print (or write) a job for efa-verify run|sweep; never submit."""

from __future__ import annotations

from pathlib import Path

import click

from buildkit.launch.job import MAX_NODES
from verify.boundary.values import Count, Digits
from verify.cliutil import handle_errors

errors = handle_errors("efakit")


def _common(func):
    """Options both launchers share: what to run, on how many of which instance."""
    options = [
        click.option("--instance-type", required=True,
                     help="p5, p5.48xlarge or ml.p5.48xlarge: GPUs and EFA devices per node."),
        click.option("--nodes", type=Count(MAX_NODES), required=True,
                     help="Nodes (sweep: at least 2)."),
        click.option("--command", "command", default="sweep", show_default=True,
                     type=click.Choice(["run", "sweep"]), help="efa-verify run or sweep."),
        click.option("--gpus-per-node", type=Digits(), default=None,
                     help="Ranks per node (default: the instance's GPU count)."),
        click.option("--output", "-o", "output", type=click.Path(path_type=Path), default=None,
                     help="Write to FILE instead of stdout."),
        click.option("--arg", "extra_args", multiple=True, metavar="ARG",
                     help="An extra argument for efa-verify (repeat: --arg --rounds --arg 4)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _emit(text: str, output: Path | None, summary: str) -> None:
    from verify.boundary.emit import to_stdout
    from verify.report import write_atomic

    if output is None:
        to_stdout(text)  # byte for byte what -o writes (click.echo strips escapes on a pipe)
        return
    write_atomic(output, text)  # a WriteError is one line, exit 2, from the handler
    click.echo(f"wrote {output}: {summary}", err=True)


def _job(command, nodes, instance_type, gpus_per_node, image, output_dir, extra_args):
    from buildkit.launch.job import make_job
    from verify.profiles import resolve

    return make_job(command, nodes, resolve(instance_type), gpus_per_node, image,
                    output_dir, tuple(extra_args))


@click.group()
def launch() -> None:
    """Write a job that runs efa-verify at scale: an sbatch script or a Kubeflow MPIJob.

    Nothing is submitted: read the output, then sbatch or kubectl apply it.
    """


@launch.command("slurm")
@_common
@click.option("--container", default="pyxis", show_default=True,
              type=click.Choice(["pyxis", "enroot", "none"]),
              help="srun --container-image (pyxis), enroot start, or bare metal.")
@click.option("--image", default=None, help="The image (pyxis/enroot form, e.g. "
              "123456789012.dkr.ecr.us-west-2.amazonaws.com#efakit/pytorch:1.0).")
@click.option("--partition", default=None)
@click.option("--time", "time_limit", default=None, help="Time limit (default from "
              "verify/data/launch.yaml).")
@click.option("--nodelist", default=None, help="Slurm node list to run on (at most --nodes).")
@click.option("--exclude", default=None, help="Slurm node list to keep out (a sweep's list).")
@click.option("--job-name", default="efa-verify", show_default=True)
@click.option("--output-dir", default="/fsx/efa-verify", show_default=True,
              help="Shared directory for reports and per-rank logs.")
@errors
def slurm(instance_type, nodes, command, gpus_per_node, output, extra_args, container, image,
          partition, time_limit, nodelist, exclude, job_name, output_dir) -> None:
    """An sbatch script: sshd in the image on every node, efa-verify on the first."""
    from buildkit.launch.slurm import slurm_script

    job = _job(command, nodes, instance_type, gpus_per_node, image, output_dir, extra_args)
    text = slurm_script(job, container, partition, time_limit, nodelist, exclude, job_name)
    _emit(text, output, f"{nodes} x {job.profile.name}, efa-verify {command}; "
          f"submit with: sbatch {output}")


@launch.command("eks")
@_common
@click.option("--image", required=True, help="The image by digest (repo@sha256:...).")
@click.option("--allow-tag", is_flag=True, help="Accept an image reference without a digest.")
@click.option("--name", default="efa-verify", show_default=True, help="The MPIJob's name.")
@click.option("--namespace", default=None)
@click.option("--output-dir", default="/tmp/efa-verify", show_default=True,
              help="Report directory inside the launcher pod.")
@errors
def eks(instance_type, nodes, command, gpus_per_node, output, extra_args, image, allow_tag,
        name, namespace, output_dir) -> None:
    """A Kubeflow MPIJob (v2beta1) with EFA, GPUs, hugepages, /dev/shm and IPC_LOCK."""
    from buildkit.launch.eks import mpijob, mpijob_yaml

    job = _job(command, nodes, instance_type, gpus_per_node, image, output_dir, extra_args)
    text = mpijob_yaml(mpijob(job, name, namespace, allow_tag))
    _emit(text, output, f"{nodes} x {job.profile.name}, efa-verify {command}; "
          f"apply with: kubectl apply -f {output}")
