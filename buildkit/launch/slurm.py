"""`efakit launch slurm`: an sbatch script that runs `efa-verify run|sweep` in an allocation."""

from __future__ import annotations

import shlex

from buildkit.launch.job import (
    CONTAINERS,
    NAME_RE,
    TIME_RE,
    Job,
    LaunchError,
    env_step,
    table,
    verifier_argv,
)
from verify.run.hosts import MAX_SLURM_HOSTS
from verify.run.nodelist import expand_nodelist


def slurm_script(job: Job, container: str, partition: str | None, time_limit: str | None,
                 nodelist: str | None, exclude: str | None, job_name: str) -> str:
    """An sbatch script: sshd on every node, then efa-verify once on the first node."""
    conf = table()
    time_limit = time_limit or conf["slurm"]["time"]
    if container not in CONTAINERS:
        raise LaunchError(f"--container {container}: one of {', '.join(CONTAINERS)}")
    if container != "none" and not job.image:
        raise LaunchError(f"--container {container} needs --image")
    if not TIME_RE.match(time_limit):
        raise LaunchError(f"--time {time_limit!r}: not a Slurm time (MM, HH:MM:SS, D-HH:MM)")
    for flag, value in (("--partition", partition), ("--job-name", job_name)):
        if value is not None and not NAME_RE.match(value):
            raise LaunchError(f"{flag} {value!r}: letters, digits, '_', '.', '-' only")
    for flag, value in (("--nodelist", nodelist), ("--exclude", exclude)):
        if value is None:
            continue
        try:
            names = expand_nodelist(value, MAX_SLURM_HOSTS)
        except ValueError as exc:
            raise LaunchError(f"{flag}: {exc}") from None
        if flag == "--nodelist" and len(names) > job.nodes:
            raise LaunchError(f"--nodelist {value} expands to {len(names)} nodes, more than "
                              f"--nodes {job.nodes}")
    port = conf["ssh"]["container_port"]
    out = job.output_dir
    lines = [
        "#!/bin/bash",
        f"# efakit launch slurm: efa-verify {job.command} on {job.nodes} x {job.profile.name} "
        f"({job.gpus_per_node} GPUs each, {job.profile.efa_devices} EFA devices).",
        "# Nothing is submitted by efakit: read this, then `sbatch` it.",
        f"# Create {job.output_dir} first: Slurm opens --output before the script runs.",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={job.nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={job.gpus_per_node}",
        "#SBATCH --exclusive",
        f"#SBATCH --time={time_limit}",
        f"#SBATCH --output={out}/slurm-%j.out",
    ]
    lines += [f"#SBATCH --partition={partition}"] if partition else []
    lines += [f"#SBATCH --nodelist={nodelist}"] if nodelist else []
    lines += [f"#SBATCH --exclude={exclude}"] if exclude else []
    run_dir = f"{out}/efa-verify-{job.command}-$SLURM_JOB_ID"
    verify = " ".join([*map(shlex.quote, verifier_argv(job)), "--output-dir", f'"{run_dir}"'])
    lines += ["set -euo pipefail", f"mkdir -p {out}", ""]
    if container == "none":
        lines += [
            "# Bare metal: the image's binaries (efa-verify, nccl-tests, Open MPI) are installed",
            "# on every node; mpirun reaches the other nodes over the hosts' own ssh.",
            "# Per-rank NCCL logs: " + run_dir + "/**/rank.N.log",
            "srun --nodes=1 --ntasks=1 bash -c "
            + shlex.quote(f"{env_step(job, True)}; exec {verify}"),
        ]
        return "\n".join(lines) + "\n"
    image = shlex.quote(job.image or "")
    mounts = f"--container-mounts={out}:{out}"
    rsh = f"ssh -p {port} -o BatchMode=yes -o StrictHostKeyChecking=no -o ConnectTimeout=5"
    sshd = f"ssh-keygen -A && exec /usr/sbin/sshd -D -p {port}"
    inner = (f"export OMPI_MCA_plm_rsh_agent={shlex.quote(rsh)}; {env_step(job, True)}; "
             f"exec {verify}")
    name = conf["slurm"]["container_name"]
    if container == "pyxis":
        lines += [
            "# pyxis: every node runs the image's sshd in a named container; the verifier step",
            "# then runs in the same container on the first node and reaches the others over",
            f"# port {port}.  Per-rank NCCL logs: {run_dir}/**/rank.N.log",
            f"srun --ntasks-per-node=1 --container-image={image} --container-name={name} "
            f"{mounts} --container-remap-root --no-container-mount-home bash -c "
            f"{shlex.quote(sshd)} &",
            "sleep 20  # sshd up on every node",
            f"srun --overlap --nodes=1 --ntasks=1 --container-name={name} {mounts} "
            f"--container-remap-root --no-container-mount-home bash -c {shlex.quote(inner)}",
        ]
    else:
        lines += [
            "# enroot without pyxis: import the image once, create the container on every",
            "# node, start sshd in it, then the verifier on the first node.",
            f"# Per-rank NCCL logs: {run_dir}/**/rank.N.log",
            f"SQSH={out}/{name}.sqsh",
            f"[ -f \"$SQSH\" ] || enroot import --output \"$SQSH\" docker://{image}",
            f"srun --ntasks-per-node=1 enroot create --force --name {name} \"$SQSH\"",
            f"srun --ntasks-per-node=1 enroot start --root --rw --mount {out}:{out} {name} "
            f"bash -c {shlex.quote(sshd)} &",
            "sleep 20  # sshd up on every node",
            f"srun --overlap --nodes=1 --ntasks=1 enroot start --root --rw --mount {out}:{out} "
            f"{name} bash -c {shlex.quote(inner)}",
        ]
    return "\n".join(lines) + "\n"
