"""`efakit launch eks`: a Kubeflow MPIJob (mpi-operator v2beta1) for `efa-verify run|sweep`."""

from __future__ import annotations

from buildkit.launch.job import (
    DIGEST_RE,
    K8S_NAME_RE,
    Job,
    LaunchError,
    env_step,
    table,
    verifier_argv,
)
from buildkit.launch.job import (
    name as checked_name,
)
from verify.boundary.emit import shell_line, yaml_document


def mpijob(job: Job, name: str, namespace: str | None, allow_tag: bool) -> dict:
    """A Kubeflow MPIJob (v2beta1): one launcher running efa-verify, N workers with sshd."""
    conf = table()["eks"]
    if not job.image:
        raise LaunchError("launch eks needs --image")
    if not DIGEST_RE.search(job.image) and not allow_tag:
        raise LaunchError(f"--image {job.image}: no digest (@sha256:...); a tag can move "
                          "between pulls on different nodes; pin it, or pass --allow-tag")
    for flag, value in (("--name", name), ("--namespace", namespace)):
        checked_name(value, flag, K8S_NAME_RE,
                     "lower-case letters, digits and '-' (at most 52 characters)")
    verify = shell_line([*verifier_argv(job, conf["hostfile"]), "--ready-timeout",
                         str(table()["ssh"]["ready_timeout"]), "--output-dir", job.output_dir])
    launcher_cmd = f"{env_step(job)}; exec {verify}"
    limits = {conf["gpu_resource"]: job.gpus_per_node,
              conf["efa_resource"]: job.profile.efa_devices,
              "hugepages-2Mi": conf["hugepages_2Mi"], "memory": conf["memory"]}
    worker = {
        "nodeSelector": {conf["instance_label"]: job.profile.name},
        "containers": [{
            "name": "worker",
            "image": job.image,
            # Host keys made at start (the image has none); the client key is
            # mpi-operator's Secret on /root/.ssh, the client options are in
            # /etc/ssh/ssh_config.d, where that mount cannot hide them.
            "command": ["bash", "-c",
                        "mkdir -p /run/sshd && ssh-keygen -A && exec /usr/sbin/sshd -De"],
            "securityContext": {"capabilities": {"add": ["IPC_LOCK"]}},
            "resources": {"limits": dict(limits), "requests": dict(limits)},
            "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
        }],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory",
                                                 "sizeLimit": conf["shm_size"]}}],
    }
    launcher = {
        "containers": [{
            "name": "launcher",
            "image": job.image,
            "command": ["bash", "-c", launcher_cmd],
            "resources": {"limits": {"cpu": "2", "memory": "4Gi"},
                          "requests": {"cpu": "1", "memory": "2Gi"}},
        }],
    }
    metadata: dict = {"name": name, "labels": {"app.kubernetes.io/managed-by": "efakit"}}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": metadata,
        "spec": {
            "slotsPerWorker": job.gpus_per_node,
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 0},
            "mpiImplementation": "OpenMPI",
            "sshAuthMountPath": "/root/.ssh",
            "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "restartPolicy": "Never",
                             "template": {"spec": launcher}},
                "Worker": {"replicas": job.nodes, "restartPolicy": "Never",
                           "template": {"spec": worker}},
            },
        },
    }


def mpijob_yaml(manifest: dict) -> str:
    header = ("# efakit launch eks: a Kubeflow MPIJob (v2beta1). Nothing is applied by efakit:\n"
              "# read this, then `kubectl apply -f` it.  The exclude list a sweep prints names\n"
              "# the workers' pod host names; `kubectl get pods -o wide` maps them to nodes.\n")
    return header + yaml_document(manifest)
