"""`efakit launch slurm`: an sbatch script that runs `efa-verify run|sweep` in an allocation."""

from __future__ import annotations

from buildkit.launch.job import (
    CONTAINERS,
    Job,
    LaunchError,
    env_step,
    name,
    table,
    time_limit,
    verifier_argv,
)
from verify.boundary.emit import sbatch_directive, shell_line, shell_word
from verify.boundary.values import BadValue
from verify.run.hosts import MAX_SLURM_HOSTS
from verify.run.nodelist import expand_nodelist


def _checked(job: Job, container: str, partition: str | None, time_text: str | None,
             nodelist: str | None, exclude: str | None, job_name: str) -> str:
    """The Slurm-only inputs, checked; returns the time limit to write."""
    if container not in CONTAINERS:
        raise LaunchError(f"--container {container}: one of {', '.join(CONTAINERS)}")
    if container != "none" and not job.image:
        raise LaunchError(f"--container {container} needs --image")
    limit = time_limit(table()["slurm"]["time"] if time_text is None else time_text)
    name(partition, "--partition")
    name(job_name, "--job-name")
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
    return limit


def _directives(job: Job, limit: str, partition: str | None, nodelist: str | None,
                exclude: str | None, job_name: str) -> list[str]:
    """The #SBATCH lines: each value one sbatch word, or the launch is refused."""
    options: list[tuple[str, object]] = [
        ("job-name", job_name), ("nodes", job.nodes), ("ntasks-per-node", 1),
        ("gpus-per-node", job.gpus_per_node), ("exclusive", None), ("time", limit),
        ("output", f"{job.output_dir.rstrip('/')}/slurm-%j.out"),
    ]
    options += [(flag, value) for flag, value in (("partition", partition),
                ("nodelist", nodelist), ("exclude", exclude)) if value]
    try:
        return [sbatch_directive(flag, value) for flag, value in options]
    except BadValue as exc:
        raise LaunchError(str(exc)) from None


def slurm_script(job: Job, container: str, partition: str | None, time_text: str | None,
                 nodelist: str | None, exclude: str | None, job_name: str) -> str:
    """An sbatch script: sshd on every node, then efa-verify once on the first node.

    Every value reaches the script as one quoted shell word (shell_line) or one
    sbatch word (sbatch_directive); the run directory, which needs $SLURM_JOB_ID,
    is a shell variable passed to the step as an argument, never spliced into it."""
    limit = _checked(job, container, partition, time_text, nodelist, exclude, job_name)
    conf = table()
    port = str(conf["ssh"]["container_port"])
    out = job.output_dir.rstrip("/") or "/"
    run_dir = f"{out}/efa-verify-{job.command}-$SLURM_JOB_ID"
    lines = [
        "#!/bin/bash",
        f"# efakit launch slurm: efa-verify {job.command} on {job.nodes} x {job.profile.name} "
        f"({job.gpus_per_node} GPUs each, {job.profile.efa_devices} EFA devices).",
        "# Nothing is submitted by efakit: read this, then `sbatch` it.",
        f"# Create {out} first: Slurm opens --output before the script runs.",
        *_directives(job, limit, partition, nodelist, exclude, job_name),
        "set -euo pipefail",
        f"OUT={shell_word(out)}",
        f"RUN_DIR={shell_word(run_dir.removesuffix('$SLURM_JOB_ID'))}\"$SLURM_JOB_ID\"",
        'mkdir -p -- "$OUT"',
        "",
    ]
    # The verifier step gets the run directory as "$1": a value, not script text.
    verify = shell_line(verifier_argv(job)) + ' --output-dir "$1"'
    if container == "none":
        return "\n".join(lines + [
            "# Bare metal: the image's binaries (efa-verify, nccl-tests, Open MPI) are installed",
            "# on every node; mpirun reaches the other nodes over the hosts' own ssh.",
            "# Per-rank NCCL logs: $RUN_DIR/**/rank.N.log",
            shell_line(["srun", "--nodes=1", "--ntasks=1", "bash", "-c",
                        f"{env_step(job, True)}; exec {verify}", "efakit"]) + ' "$RUN_DIR"',
        ]) + "\n"
    image = job.image or ""
    rsh = shell_line(["ssh", "-p", port, "-o", "BatchMode=yes", "-o",
                      "StrictHostKeyChecking=no", "-o", "ConnectTimeout=5"])
    sshd = f"ssh-keygen -A && exec /usr/sbin/sshd -D -p {port}"
    inner = (f"export OMPI_MCA_plm_rsh_agent={shell_word(rsh)}; {env_step(job, True)}; "
             f"exec {verify}")
    cname = conf["slurm"]["container_name"]
    if container == "pyxis":
        mounts = f"--container-mounts={out}:{out}"
        common = [f"--container-name={cname}", mounts, "--container-remap-root",
                  "--no-container-mount-home"]
        return "\n".join(lines + [
            "# pyxis: every node runs the image's sshd in a named container; the verifier step",
            "# then runs in the same container on the first node and reaches the others over",
            f"# port {port}.  Per-rank NCCL logs: $RUN_DIR/**/rank.N.log",
            shell_line(["srun", "--ntasks-per-node=1", f"--container-image={image}",
                        *common, "bash", "-c", sshd]) + " &",
            "sleep 20  # sshd up on every node",
            shell_line(["srun", "--overlap", "--nodes=1", "--ntasks=1", *common, "bash",
                        "-c", inner, "efakit"]) + ' "$RUN_DIR"',
        ]) + "\n"
    mount = ["--mount", f"{out}:{out}"]
    return "\n".join(lines + [
        "# enroot without pyxis: import the image once, create the container on every",
        "# node, start sshd in it, then the verifier on the first node.",
        "# Per-rank NCCL logs: $RUN_DIR/**/rank.N.log",
        f"SQSH=\"$OUT\"/{shell_word(cname + '.sqsh')}",
        f'[ -f "$SQSH" ] || enroot import --output "$SQSH" {shell_word("docker://" + image)}',
        shell_line(["srun", "--ntasks-per-node=1", "enroot", "create", "--force", "--name",
                    cname]) + ' "$SQSH"',
        shell_line(["srun", "--ntasks-per-node=1", "enroot", "start", "--root", "--rw", *mount,
                    cname, "bash", "-c", sshd]) + " &",
        "sleep 20  # sshd up on every node",
        shell_line(["srun", "--overlap", "--nodes=1", "--ntasks=1", "enroot", "start", "--root",
                    "--rw", *mount, cname, "bash", "-c", inner, "efakit"]) + ' "$RUN_DIR"',
    ]) + "\n"
