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
    """An sbatch script that runs efa-verify once, on the first node of the allocation.

    Bare metal: ranks start as srun steps (`--launcher srun`, PMIx), no sshd.  In
    pyxis/enroot containers (no srun inside): a per-job key pair and sshd, then
    mpirun over ssh, after every node answers (`--ready-timeout`).  Every value
    reaches the script as one quoted shell word (shell_line) or one sbatch word
    (sbatch_directive); paths that need $SLURM_JOB_ID are shell variables passed to
    the steps as arguments ($1, $2), never spliced into their scripts."""
    limit = _checked(job, container, partition, time_text, nodelist, exclude, job_name)
    out = job.output_dir.rstrip("/") or "/"
    lines = [
        "#!/bin/bash",
        f"# efakit launch slurm: efa-verify {job.command} on {job.nodes} x {job.profile.name} "
        f"({job.gpus_per_node} GPUs each, {job.profile.efa_devices} EFA devices).",
        "# Nothing is submitted by efakit: read this, then `sbatch` it.",
        f"# Create {out} first: Slurm opens --output before the script runs.",
        *_directives(job, limit, partition, nodelist, exclude, job_name),
        "set -euo pipefail",
        f"OUT={shell_word(out)}",
        f"RUN_DIR={shell_word(f'{out}/efa-verify-{job.command}-')}\"$SLURM_JOB_ID\"",
        'mkdir -p -- "$OUT"',
        "",
    ]
    if container == "none":
        return "\n".join(lines + _bare_metal(job)) + "\n"
    return "\n".join(lines + _in_containers(job, container, out)) + "\n"


def _verifier(job: Job, *extra: str) -> str:
    """The verifier's command line for a step script: its output dir is "$1"."""
    return shell_line([*verifier_argv(job), *extra]) + ' --output-dir "$1"'


def _bare_metal(job: Job) -> list[str]:
    mpi = table()["slurm"]["srun_mpi"]
    verify = _verifier(job, "--launcher", "srun", "--srun-mpi", mpi)
    return [
        "# Bare metal: the image's binaries (efa-verify, nccl-tests) are installed on every",
        f"# node.  efa-verify starts every rank as an srun step (--mpi={mpi}) inside this",
        "# allocation: no sshd, no keys.  Per-rank NCCL logs: $RUN_DIR/**/rank.N.log",
        shell_line(["srun", "--nodes=1", "--ntasks=1", "bash", "-c",
                    f"{env_step(job, True)}; exec {verify}", "efakit"]) + ' "$RUN_DIR"',
    ]


def _in_containers(job: Job, container: str, out: str) -> list[str]:
    """pyxis or enroot: import once per node, a per-job key pair, sshd, then the verifier."""
    conf = table()
    port = str(conf["ssh"]["container_port"])
    cname = conf["slurm"]["container_name"]
    image = job.image or ""
    # sshd with the job's own host key and authorized key (nothing from the image, which
    # carries none): /run/sshd again because enroot mounts a tmpfs on /run.  StrictModes
    # off: the key directory is 0700 but its parents on shared storage are the site's.
    sshd = ('mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -p "$2" -h "$1/host_ed25519_key" '
            '-o AuthorizedKeysFile="$1/authorized_keys" -o StrictModes=no -o PidFile=none')
    keygen = ('umask 077 && mkdir -p -- "$1" && ssh-keygen -q -t ed25519 -N "" -C efakit-job '
              '-f "$1/id_ed25519" && ssh-keygen -q -t ed25519 -N "" -C efakit-job '
              '-f "$1/host_ed25519_key" && cp "$1/id_ed25519.pub" "$1/authorized_keys"')
    rsh = ('export OMPI_MCA_plm_rsh_agent="ssh -p $3 -i $2/id_ed25519 -o BatchMode=yes '
           '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5"')
    verify = _verifier(job, "--ready-timeout", str(conf["ssh"]["ready_timeout"]))
    inner = f"{rsh}; {env_step(job, True)}; exec {verify}"
    if container == "pyxis":
        common = [f"--container-name={cname}", f"--container-mounts={out}:{out}",
                  "--container-remap-root", "--no-container-mount-home"]
        start = ["srun", "--ntasks-per-node=1", f"--container-image={image}", *common]
        each = ["srun", "--overlap", "--ntasks-per-node=1", *common]
        first = ["srun", "--overlap", "--nodes=1", "--ntasks=1", *common]
        prepare = [shell_line([*start, "true"]) + "  # import the image on every node; "
                   "Slurm names a node that fails"]
    else:
        mount = ["--mount", f"{out}:{out}"]
        each = ["srun", "--overlap", "--ntasks-per-node=1", "enroot", "start", "--root", "--rw",
                *mount, cname]
        first = ["srun", "--overlap", "--nodes=1", "--ntasks=1", "enroot", "start", "--root",
                 "--rw", *mount, cname]
        prepare = [
            f"SQSH=\"$OUT\"/{shell_word(cname + '.sqsh')}",
            f'[ -f "$SQSH" ] || enroot import --output "$SQSH" {shell_word("docker://" + image)}',
            shell_line(["srun", "--ntasks-per-node=1", "enroot", "create", "--force", "--name",
                        cname]) + ' "$SQSH"',
        ]
    return [
        f"# {container}: the verifier runs in the image on the first node, where srun is not",
        "# available, so it reaches the other nodes over ssh: a key pair made for this job",
        f"# (0700, under $OUT), sshd on port {port} in the container on every node, and",
        "# efa-verify waits until each node answers before mpirun starts.",
        "# Per-rank NCCL logs: $RUN_DIR/**/rank.N.log",
        f"KEYS={shell_word(f'{out}/.efa-verify-ssh-')}\"$SLURM_JOB_ID\"",
        *prepare,
        shell_line([*first, "bash", "-c", keygen, "efakit"]) + ' "$KEYS"',
        shell_line([*each, "bash", "-c", sshd, "efakit"]) + f' "$KEYS" {port} &',
        "SSHD=$!",
        "trap 'kill \"$SSHD\" 2>/dev/null || true; rm -rf -- \"$KEYS\"' EXIT",
        shell_line([*first, "bash", "-c", inner, "efakit"]) + f' "$RUN_DIR" "$KEYS" {port}',
    ]
