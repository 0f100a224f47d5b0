"""Real image builds of the offline profile (Docker required; CI starts an engine).

The CI images are built once per session through the same make target a user
runs (`make ci-image`): a mirror of hash-pinned wheels, a debootstrapped base,
then both variants with BuildKit.  Containers run with EFAKIT_IMDS=off so no
test ever asks an instance-metadata address.
"""

import json
import os
import shutil
import tarfile

import pytest

from tests import procs
from tests.conftest import CI_EC2, CI_SAGEMAKER, ROOT, TEST_REPO
from tests.procs import EFAKIT

pytestmark = pytest.mark.docker
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
EC2, SAGEMAKER = CI_EC2, CI_SAGEMAKER


def docker(*args, check=True, timeout=600):
    proc = procs.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def run_in(image, script, env=()):
    args = ["run", "--rm", "-e", "EFAKIT_IMDS=off"]
    for item in env:
        args += ["-e", item]
    return docker(*args, image, "bash", "-c", script)


def test_both_ci_images_have_a_content_tag_and_the_alias(ci_images, ci_build_out):
    for alias, variant in ((EC2, "ec2"), (SAGEMAKER, "sagemaker")):
        tags = json.loads(docker("image", "inspect", "--format", "{{json .RepoTags}}",
                                 alias).stdout)
        content = [t for t in tags if t != alias]
        assert content and content[0].startswith(
            f"{TEST_REPO}:pytorch2.13-cuda13.3-efasrc-ofi1.21-nccl2.29-{variant}-")
    record = json.loads((ci_build_out / "last-build.json").read_text())
    assert record["variant"] == "sagemaker" and SAGEMAKER in record["tags"]


def test_labels_carry_every_version_and_the_source_revision(ci_images):
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}",
                               EC2).stdout)
    assert labels["dev.efakit.version.torch"] == "2.13.0"
    assert labels["dev.efakit.version.libfabric"] == "2.6.0"
    assert labels["dev.efakit.version.aws-ofi-nccl"] == "1.21.1"
    assert labels["dev.efakit.version.efa-installer"] == "absent"
    assert labels["dev.efakit.gpu-archs"] == "sm_80,sm_90,sm_100"
    assert labels["dev.efakit.profile"] == "offline"
    assert labels["org.opencontainers.image.revision"]
    assert labels["org.opencontainers.image.created"].endswith("Z")


def test_ec2_image_contents(ci_images):
    script = r"""
set -e
python3 -c 'import torch; print("torch", torch.__version__)' 2>/dev/null
efa-verify --version
fi_info --version | head -1
fi_info -l | grep -c '^efa:' | sed 's/^/efa-provider /'
ldconfig -p | grep 'libfabric.so.1 ' | grep -c /opt/amazon/efa/lib | sed 's/^/libfabric-resolvable /'
ls /opt/amazon/efa/lib/libibverbs/ | grep -c libefa | sed 's/^/libefa /'
ls /opt/amazon/ofi-nccl/lib/libnccl-net-ofi.so /opt/gdrcopy/lib/libgdrapi.so.2
ls /opt/nccl-tests/
find / -xdev -name 'libnccl.so.2*' -type f 2>/dev/null | wc -l | sed 's/^/nccl-copies /'
command -v sshd mpirun mpirun-root
ls /etc/ssh/ssh_host_*_key | wc -l | sed 's/^/host-keys /'
echo "rdma=${FI_EFA_USE_DEVICE_RDMA-unset} ld=$LD_LIBRARY_PATH"
find /opt/amazon /opt/gdrcopy /opt/nccl-tests -path '*share/licenses/*' -type f | sort
"""
    out = run_in(EC2, script).stdout
    assert "torch 2.13.0+cpu" in out and "efa-verify, version" in out
    assert "fi_info: 2.6.0" in out and "efa-provider 1" in out
    assert "libfabric-resolvable 1" in out and "libefa 1" in out
    for binary in ("all_reduce_perf", "all_gather_perf", "reduce_scatter_perf",
                   "alltoall_perf"):
        assert binary in out
    assert "nccl-copies 1" in out
    assert "/usr/sbin/sshd" in out and "/usr/local/bin/mpirun-root" in out
    assert "host-keys 0" not in out  # generated when the container starts
    assert "rdma=unset" in out  # env rules: libfabric >= 1.18 with plugin >= 1.7
    assert "ld=/opt/amazon/ofi-nccl/lib:/opt/amazon/efa/lib" in out
    for license_file in ("efa/share/licenses/rdma-core/COPYING.GPL2",
                         "efa/share/licenses/libfabric/COPYING",
                         "ofi-nccl/share/licenses/aws-ofi-nccl/LICENSE",
                         "gdrcopy/share/licenses/gdrcopy/LICENSE",
                         "nccl-tests/share/licenses/nccl-tests/LICENSE.txt"):
        assert license_file in out


def test_the_runtime_stage_carries_no_toolchain_or_sources(ci_images):
    script = r"""
for tool in gcc cc c++ nvcc make cmake autoconf git; do command -v $tool || true; done
ls -d /opt/cuda-wheels /tmp/src /usr/include/infiniband 2>/dev/null || true
find /opt/amazon /opt/gdrcopy /opt/nccl-tests \( -name '*.a' -o -name '*.la' -o -name '*.c' \) | head -3
for f in /opt/nccl-tests/all_reduce_perf /opt/amazon/efa/lib/libfabric.so.1; do
  python3 -c 'import sys; from verify import elf; print(sys.argv[1], ".symtab" if elf.section(__import__("pathlib").Path(sys.argv[1]), ".symtab") is not None else "stripped")' $f
done
echo end
"""
    out = run_in(EC2, script).stdout.split()
    assert out[-1] == "end" and out.count("stripped") == 2, out
    assert [w for w in out if w not in ("end", "stripped") and not w.startswith("/opt/")
            or w.startswith(("/opt/cuda-wheels", "/tmp/src"))] == [], out


def test_the_built_libfabric_moves_data_over_tcp(ci_images):
    """fi_pingpong with the image's own libfabric, server and client in one container."""
    script = ("(fi_pingpong -p tcp -e rdm -I 100 -S 1024 >/tmp/server.log 2>&1 &); sleep 1; "
              "fi_pingpong -p tcp -e rdm -I 100 -S 1024 127.0.0.1; echo rc=$?")
    out = run_in(EC2, script).stdout
    assert "rc=0" in out and "1k" in out, out


def test_start_time_step_applies_instance_rules(ci_images):
    # libfabric 2.6 with plugin 1.21: the image sets no FI_EFA_USE_DEVICE_RDMA, so an
    # instance without RDMA read (g4dn) needs no change.
    out = run_in(EC2, 'echo "rdma=${FI_EFA_USE_DEVICE_RDMA-unset}"',
                 env=("EFAKIT_INSTANCE_TYPE=g4dn.metal", "EFAKIT_VERBOSE=1"))
    assert out.stdout.strip() == "rdma=unset"
    assert "efakit: instance g4dn.metal" in out.stderr and "already fits" in out.stderr


def test_no_private_key_in_any_layer(ci_images, tmp_path):
    archive = tmp_path / "image.tar"
    docker("save", "-o", str(archive), EC2, timeout=900)
    found = []
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if not member.name.endswith("layer.tar"):
                continue
            with tarfile.open(fileobj=outer.extractfile(member)) as layer:
                for entry in layer.getmembers():
                    if entry.isfile() and entry.size < 64 << 10:
                        data = layer.extractfile(entry).read().lstrip()
                        if data.startswith(b"-----BEGIN") and b"PRIVATE KEY" in data[:64]:
                            found.append(entry.name.lstrip("./"))
    # No private key in any layer (#26): keys come from the runtime, host keys are made
    # when a container starts.
    assert found == [], found
    history = docker("history", "--no-trunc", EC2).stdout
    assert "PRIVATE KEY" not in history and "BEGIN CERTIFICATE" not in history


def test_sagemaker_image_is_a_training_image(ci_images):
    out = run_in(SAGEMAKER, "command -v train; ls -d /opt/ml/code /opt/ml/input/config")
    assert "/train" in out.stdout and "/opt/ml/code" in out.stdout
    cmd = json.loads(docker("image", "inspect", "--format", "{{json .Config.Cmd}}",
                            SAGEMAKER).stdout)
    assert cmd == ["train"]


def _tampered_mirror(tmp_path):
    docker("image", "rm", f"{TEST_REPO}:tampered", check=False)  # from an earlier run
    mirror = tmp_path / "mirror"
    shutil.copytree(ROOT / "out" / "mirror", mirror, copy_function=os.link)
    victim = next((mirror / "wheels").glob("click-*.whl"))
    data = victim.read_bytes()
    victim.unlink()  # break the hard link: the real mirror stays intact
    victim.write_bytes(data + b"tampered")
    return mirror, victim


def test_tampered_mirror_wheel_fails_the_build_and_tags_nothing(ci_images, tmp_path):
    mirror, victim = _tampered_mirror(tmp_path)
    proc = procs.run([*EFAKIT, "build", "pytorch", "--profile", "offline", "--variant",
                      "ec2", "--artifacts", str(mirror), "--tag", "tampered",
                      "--out", str(tmp_path / "build")],
                     cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 2
    assert f"artifact {victim.name}: sha256 mismatch: expected " in proc.stderr
    assert docker("image", "inspect", f"{TEST_REPO}:tampered", check=False).returncode != 0


def test_pip_inside_the_build_checks_the_same_hashes(ci_images, tmp_path):
    """Defense in depth: even past the host check, pip --require-hashes refuses it."""
    mirror, _ = _tampered_mirror(tmp_path)
    ctx = tmp_path / "ctx"
    procs.run([*EFAKIT, "render", "pytorch", "--profile", "offline", "--variant", "ec2",
               "-o", str(ctx)], cwd=ROOT, check=True, capture_output=True)
    shutil.rmtree(ctx / "artifacts")
    shutil.copytree(mirror, ctx / "artifacts")
    proc = procs.run([DOCKER, "build", "-t", f"{TEST_REPO}:tampered", str(ctx)],
                     capture_output=True, text=True, timeout=900,
                     env={**os.environ, "DOCKER_BUILDKIT": "1"})
    assert proc.returncode != 0 and "DO NOT MATCH THE HASHES" in proc.stderr + proc.stdout
    assert docker("image", "inspect", f"{TEST_REPO}:tampered", check=False).returncode != 0


def test_same_inputs_same_tag(ci_images, tmp_path):
    proc = procs.run([*EFAKIT, "build", "pytorch", "--profile", "offline", "--variant",
                      "ec2", "--out", str(tmp_path / "again")],
                     cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    first = json.loads(docker("image", "inspect", "--format", "{{json .RepoTags}}",
                              EC2).stdout)
    again = [line.split()[1] for line in proc.stdout.splitlines() if line.strip()
             .startswith("tag ")]
    assert again[0] in first


def _layer_files_containing(image, needle, tmp_path):
    archive = tmp_path / "scan.tar"
    docker("save", "-o", str(archive), image, timeout=900)
    hits = []
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if member.isfile() and member.name.endswith("layer.tar"):
                with tarfile.open(fileobj=outer.extractfile(member)) as layer:
                    for entry in layer.getmembers():
                        if entry.isfile() and needle in layer.extractfile(entry).read():
                            hits.append(entry.name)
            elif member.isfile() and needle in outer.extractfile(member).read():
                hits.append(member.name)  # image config (history, env, labels)
    return hits


def test_ca_bundle_secret_never_lands_in_a_layer(ci_images, tmp_path):
    """The rendered context built with a CA bundle secret; a nonce after the final stage's
    FROM re-runs that stage's pip and apt steps (each sees the secret) while the compiled
    stack stays cached.  Tagged in the tests' own namespace."""
    canary = b"-----BEGIN CERTIFICATE-----\nEFAKIT-CANARY-7f3a9c\n-----END CERTIFICATE-----\n"
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_bytes(canary)
    ctx = tmp_path / "ctx"
    procs.run([*EFAKIT, "render", "pytorch", "--profile", "offline", "--variant", "ec2",
               "-o", str(ctx)], cwd=ROOT, check=True, capture_output=True)
    shutil.rmtree(ctx / "artifacts")
    shutil.copytree(ROOT / "out" / "mirror", ctx / "artifacts", copy_function=os.link)
    dockerfile = (ctx / "Dockerfile").read_text()
    final = dockerfile.rindex("\nFROM efakit/base:bookworm\n") + 1
    line_end = dockerfile.index("\n", final) + 1
    (ctx / "Dockerfile").write_text(dockerfile[:line_end] + f"ARG EFAKIT_TEST_NONCE={os.getpid()}"
                                    f"-{tmp_path.name}\n" + dockerfile[line_end:])
    ref = f"{TEST_REPO}:secret-test"
    proc = procs.run([DOCKER, "build", "--progress=plain", "-t", ref, "--secret",
                      f"id=ca-bundle,src={bundle}", str(ctx)], capture_output=True,
                     text=True, timeout=1500, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        ran = [ln for ln in proc.stderr.splitlines() if "efakit-with-ca" in ln
               and " RUN " in ln and "CACHED" not in ln]
        assert ran, "no pip step ran with the secret available"
        assert _layer_files_containing(ref, b"EFAKIT-CANARY-7f3a9c", tmp_path) == []
    finally:
        docker("image", "rm", ref, check=False)


def test_a_failing_step_is_named_with_its_last_lines(ci_images, tmp_path):
    home = tmp_path / "home"
    for name in ("templates", "verify", "buildkit", "images"):
        shutil.copytree(ROOT / name, home / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, home / name)
    ssh = home / "templates" / "partials" / "ssh.j2"
    ssh.write_text(ssh.read_text() + "RUN echo efakit-test-failing-step && exit 3\n")
    proc = procs.run([*EFAKIT, "build", "pytorch", "--profile", "offline", "--variant",
                      "ec2", "--artifacts", str(ROOT / "out" / "mirror"), "--tag", "broken",
                      "--out", str(tmp_path / "b")], capture_output=True, text=True,
                     timeout=900, env={**os.environ, "EFAKIT_HOME": str(home)})
    assert proc.returncode == 1
    assert "build failed at [" in proc.stderr and "efakit-test-failing-step" in proc.stderr
    assert "no tag was applied" in proc.stderr
    assert docker("image", "inspect", f"{TEST_REPO}:broken", check=False).returncode != 0


def test_run_in_the_offline_image_fails_truthfully(ci_images):
    """Real mpirun with the image's own nccl-tests, and real torchrun: no GPU here."""
    common = "--hosts localhost --gpus-per-host 1 --json"
    script = (f"efa-verify run {common} --output-dir /tmp/o1; echo @@$?@@;"
              f" efa-verify run --engine torch {common} --output-dir /tmp/o2; echo @@$?@@")
    parts = run_in(EC2, script).stdout.split("@@")
    first, second = json.loads(parts[0]), json.loads(parts[2])
    assert (parts[1], parts[3]) == ("1", "1")
    checks = {c["name"]: c for c in first["checks"]}
    assert checks["gpus"]["status"] == "fail"  # no GPU in a CI container
    bench = checks["benchmark"]
    assert bench["status"] == "fail" and "exited with status" in bench["message"]
    # The compiled all_reduce_perf ran, found NCCL 2.29.7, and stopped at the missing driver.
    assert any("CUDA driver version is insufficient" in e["text"] for e in bench["evidence"])
    bench = next(c for c in second["checks"] if c["name"] == "benchmark")
    assert bench["status"] == "fail" and "exited with status" in bench["message"]
    assert any("CUDA is not available to torch 2.13.0" in e["text"] for e in bench["evidence"])


def test_build_json_names_the_image_its_tags_and_log(ci_images, tmp_path):
    import jsonschema
    proc = procs.run([*EFAKIT, "build", "pytorch", "--profile", "offline", "--variant", "ec2",
                           "--out", str(tmp_path), "--json"], capture_output=True, text=True,
                          cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, json.loads((ROOT / "verify" / "schema" / "build.schema.json")
                                        .read_text()))
    (build,) = doc["builds"]
    assert build["variant"] == "ec2" and build["tags"][0].startswith(f"{TEST_REPO}:pytorch")
    # ci_images built it: same inputs, same content tag, nothing rebuilt
    with open(build["log"], encoding="utf-8") as log:
        assert "exists: same inputs, nothing built" in log.read()
