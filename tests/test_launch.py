"""`efakit launch slurm|eks`: what is generated, validated as far as this machine allows.

No Slurm with pyxis and no Kubernetes cluster run here.  The sbatch scripts
are parsed by bash (`bash -n`) and read as text (pyxis and enroot are not in
Debian).  The MPIJob is validated against the mpi-operator v0.8.0 CRD's
OpenAPI schema (tests/fixtures/k8s, kubeflow/mpi-operator v0.8.0),
strictly: no field the CRD does not define; its pod templates against
Kubernetes' own schemas (kubernetes-validate, from the package index).
"""

from __future__ import annotations

import re
import subprocess
import sys

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT

CRD = ROOT / "tests" / "fixtures" / "k8s" / "kubeflow.org_mpijobs.yaml"  # see its README
DIGEST = "123456789012.dkr.ecr.us-west-2.amazonaws.com/efakit@sha256:" + "ab" * 32
K8S_VERSION = "1.33"


def efakit(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "buildkit.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60)


def slurm(*args: str) -> str:
    done = efakit("launch", "slurm", "--instance-type", "p5", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def bash_parses(text: str, tmp_path) -> None:
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_pyxis_script_asks_for_the_nodes_gpus_and_runs_the_sweep_in_the_image(tmp_path):
    text = slurm("--nodes", "16", "--image", "ecr#efakit-test/pytorch:1.0", "--partition", "gpu",
                 "--time", "1:00:00", "--exclude", "p5-[003,017]")
    bash_parses(text, tmp_path)
    sbatch = dict(re.findall(r"^#SBATCH --([a-z-]+)(?:=(.*))?$", text, re.M))
    assert sbatch == {"job-name": "efa-verify", "nodes": "16", "ntasks-per-node": "1",
                      "gpus-per-node": "8", "exclusive": "", "time": "1:00:00",
                      "output": "/fsx/efa-verify/slurm-%j.out", "partition": "gpu",
                      "exclude": "p5-[003,017]"}
    steps = [line for line in text.splitlines() if line.startswith("srun ")]
    assert len(steps) == 4  # import, key pair, sshd on every node, the verifier
    assert "'--container-image=ecr#efakit-test/pytorch:1.0' --container-name=efakit" in steps[0]
    assert all("--container-image" not in s and "--container-name=efakit" in s
               for s in steps[1:])  # the container exists on every node before they start
    assert "ssh-keygen -q -t ed25519" in steps[1] and "umask 077" in steps[1]
    assert "/usr/sbin/sshd -D -e -p" in steps[2] and steps[2].endswith('"$KEYS" 2222 &')
    assert "mkdir -p /run/sshd" in steps[2] and 'AuthorizedKeysFile="$1/authorized_keys"' in steps[2]
    assert "ssh -p $3 -i $2/id_ed25519" in steps[3]  # mpirun reaches the others with the job's key
    assert "efa-verify env --shell --instance-type p5.48xlarge" in steps[3]  # the env rules
    assert ("efa-verify sweep --instance-type p5.48xlarge --gpus-per-host 8 --ready-timeout 600 "
            '--output-dir "$1"\' efakit "$RUN_DIR" "$KEYS" 2222') in steps[3]
    assert "sleep" not in text  # readiness, not a fixed wait
    assert 'RUN_DIR=/fsx/efa-verify/efa-verify-sweep-"$SLURM_JOB_ID"' in text.splitlines()
    assert 'KEYS=/fsx/efa-verify/.efa-verify-ssh-"$SLURM_JOB_ID"' in text.splitlines()
    assert "rank.N.log" in text  # where the per-rank NCCL logs land


def test_enroot_and_bare_metal_scripts_parse_and_run_efa_verify_once(tmp_path):
    enroot = slurm("--nodes", "4", "--container", "enroot", "--image", "efakit-test/pytorch:1.0",
                   "--command", "run", "--gpus-per-node", "4")
    bash_parses(enroot, tmp_path)
    assert "enroot import --output \"$SQSH\" docker://efakit-test/pytorch:1.0" in enroot
    assert "efa-verify run --instance-type p5.48xlarge --gpus-per-host 4" in enroot
    bare = slurm("--nodes", "2", "--container", "none", "--arg", "--rounds", "--arg", "4")
    bash_parses(bare, tmp_path)
    assert "enroot" not in bare and "--container" not in bare
    assert bare.count("\nsrun ") == 1 and "--rounds 4 --launcher srun --srun-mpi pmix" in bare
    assert "ssh " not in bare and "rsh_agent" not in bare  # srun starts every rank


def test_output_file_is_written_and_the_summary_goes_to_stderr(tmp_path):
    target = tmp_path / "job.sbatch"
    done = efakit("launch", "slurm", "--instance-type", "p4d", "--nodes", "2", "--container",
                  "none", "-o", str(target))
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.startswith(f"wrote {target}: 2 x p4d.24xlarge")
    assert "#SBATCH --gpus-per-node=8" in target.read_text()


@pytest.mark.parametrize("args, message", [
    (["slurm", "--instance-type", "p5", "--nodes", "1", "--container", "none"],
     "--nodes 1: a sweep needs at least 2 nodes"),
    (["slurm", "--instance-type", "p9", "--nodes", "2"], "unknown instance type 'p9'; known:"),
    (["slurm", "--instance-type", "p5", "--nodes", "2", "--container", "none",
      "--nodelist", "p5-[001-003]"],
     "--nodelist p5-[001-003] expands to 3 nodes, more than --nodes 2"),
    (["slurm", "--instance-type", "p5", "--nodes", "2"], "--container pyxis needs --image"),
    (["slurm", "--instance-type", "p5", "--nodes", "2", "--container", "none", "--time",
      "soon"], "--time 'soon': not a Slurm time"),
    (["slurm", "--instance-type", "p5", "--nodes", "2", "--container", "none",
      "--output-dir", "rel/dir"], "--output-dir 'rel/dir': an absolute path"),
    (["eks", "--instance-type", "p5", "--nodes", "2", "--image", "efakit-test/pytorch:1.0"],
     "--image efakit-test/pytorch:1.0: no digest (@sha256:...)"),
    (["eks", "--instance-type", "g5.xlarge", "--nodes", "2", "--image", DIGEST],
     "g5.xlarge has no EFA device"),
    (["eks", "--instance-type", "p5", "--nodes", "2", "--image", DIGEST, "--name", "Bad_Name"],
     "--name 'Bad_Name': lower-case letters"),
])
def test_bad_launch_input_is_a_one_line_usage_error(tmp_path, args, message):
    target = tmp_path / "out.yaml"
    done = efakit("launch", *args, "-o", str(target))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"efakit: error: {message}"), done.stderr
    assert done.stderr.count("\n") == 1 and not target.exists()


def manifest(*args: str) -> dict:
    done = efakit("launch", "eks", *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# efakit launch eks:")
    return yaml.safe_load(done.stdout)


def crd_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v2beta1")
    return version["schema"]["openAPIV3Schema"]


def unknown_fields(value, schema: dict, path: str = "") -> list[str]:
    """Keys the schema does not define (the API server would prune them silently)."""
    found = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{path}.{key}")
            else:
                found += unknown_fields(item, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            found += unknown_fields(item, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


@pytest.mark.parametrize("instance, efa, gpus", [("p5", 32, 8), ("p4d", 4, 8),
                                                 ("p5en", 16, 8)])
def test_mpijob_matches_the_crd_schema_and_the_instance_table(instance, efa, gpus):
    schema = crd_schema()
    job = manifest("--instance-type", instance, "--nodes", "4", "--image", DIGEST)
    jsonschema.validate(job, schema)
    assert unknown_fields(job, schema) == []
    worker = job["spec"]["mpiReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 4 and job["spec"]["slotsPerWorker"] == gpus
    pod = worker["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == DIGEST
    assert container["resources"]["limits"]["vpc.amazonaws.com/efa"] == efa
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert container["resources"]["limits"]["hugepages-2Mi"] == "5120Mi"
    assert container["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    assert pod["volumes"][0]["emptyDir"]["medium"] == "Memory"
    assert container["volumeMounts"][0]["mountPath"] == "/dev/shm"
    assert list(pod["nodeSelector"].values())[0].startswith(instance + ".")
    launcher = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert "efa-verify sweep" in launcher["command"][-1]
    assert "--hostfile /etc/mpi/hostfile" in launcher["command"][-1]


def test_mpijob_schema_check_catches_a_broken_manifest():
    schema = crd_schema()
    job = manifest("--instance-type", "p5", "--nodes", "2", "--image", DIGEST)
    job["spec"]["slotsPerWorker"] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, schema)
    job["spec"]["slotsPerWorker"] = 8
    job["spec"]["mpiReplicaSpecs"]["Worker"]["replicaz"] = 2
    assert unknown_fields(job, schema) == [".spec.mpiReplicaSpecs.Worker.replicaz"]


def test_the_pod_templates_are_valid_kubernetes_pods():
    kv = pytest.importorskip("kubernetes_validate",
                             reason="kubernetes-validate: not installed (the test extra has it)")
    job = manifest("--instance-type", "p5", "--nodes", "2", "--image", "efakit-test/pytorch:1.0",
                   "--allow-tag", "--namespace", "ml")
    assert job["metadata"]["namespace"] == "ml"
    for role in ("Launcher", "Worker"):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": role.lower()},
               "spec": job["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]}
        kv.validate(pod, K8S_VERSION, strict=True)
    pod["spec"]["containers"][0]["securityContext"]["capabilitiez"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(pod, K8S_VERSION, strict=True)
