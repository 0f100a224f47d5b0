"""The start-time env step: instance detection and what it changes, run for real."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from buildkit.render import render_context
from buildkit.spec import load_spec
from tests import procs
from tests.conftest import FIXTURES, ROOT
from tests.procs import VERIFY
from verify import detect, startenv
from verify.profiles import resolve

SEED = FIXTURES / "specs" / "seed" / "pytorch.yaml"


@pytest.fixture
def seed_image_env(tmp_path) -> Path:
    ctx = render_context(load_spec(SEED), "ec2", tmp_path / "ctx")
    return ctx / "efakit" / "image-env.json"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("EFAKIT_INSTANCE_TYPE", "EFAKIT_IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EFAKIT_IMDS", "off")
    monkeypatch.setenv("EFAKIT_SM_RESOURCE_CONFIG", str(tmp_path / "absent.json"))


def test_env_variable_wins(clean_env, monkeypatch):
    monkeypatch.setenv("EFAKIT_INSTANCE_TYPE", "ml.p5.48xlarge")
    found = detect.detect()
    assert found.profile.name == "p5.48xlarge" and found.source == "EFAKIT_INSTANCE_TYPE"


def test_sagemaker_resource_config(clean_env, monkeypatch, tmp_path):
    config = tmp_path / "resourceconfig.json"
    config.write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"],
                                  "current_instance_type": "ml.p4d.24xlarge"}))
    monkeypatch.setenv("EFAKIT_SM_RESOURCE_CONFIG", str(config))
    found = detect.detect()
    assert found.profile.name == "p4d.24xlarge" and found.source == "sagemaker-resource-config"


class _Imds(BaseHTTPRequestHandler):
    def do_PUT(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"token-123")

    def do_GET(self):  # noqa: N802
        ok = self.headers.get("X-aws-ec2-metadata-token") == "token-123"
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"g4dn.metal" if ok else b"")

    def log_message(self, *args):
        pass


def test_ec2_metadata_imdsv2_on_a_local_server(clean_env, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Imds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("EFAKIT_IMDS", "on")
        monkeypatch.setenv("EFAKIT_IMDS_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        found = detect.detect()
    finally:
        server.shutdown()
    assert found.profile.name == "g4dn.metal" and found.source == "ec2-metadata"


def test_gpu_model_fallback_and_ambiguity():
    assert detect.from_gpu("NVIDIA A100-SXM4-40GB").profile.name == "p4d.24xlarge"
    h200 = detect.from_gpu("NVIDIA H200")
    assert h200.profile is None and {p.name for p in h200.candidates} == \
        {"p5e.48xlarge", "p5en.48xlarge"}


def test_nothing_detected(clean_env, monkeypatch):
    monkeypatch.setattr(detect, "gpu_model", lambda: None)
    assert detect.detect().profile is None


def test_plan_leaves_device_rdma_out_without_rdma_read(seed_image_env):
    record = startenv.load_image_env(seed_image_env)
    det = detect.Detection(resolve("g4dn.metal"), "test", "g4dn.metal")
    plan = startenv.plan(record, det, {})
    # absent at start, it stays absent: no line (an `unset` could only remove the
    # evaluating shell's own unexported variable)
    assert startenv.shell_lines(plan) == []
    assert any("no RDMA read" in line for line in startenv.describe(plan))


@pytest.mark.parametrize("value", ["0", "1"])  # "1" is the image's own default
def test_plan_never_touches_a_user_choice_whatever_its_value(seed_image_env, value):
    record = startenv.load_image_env(seed_image_env)
    det = detect.Detection(resolve("g4dn.metal"), "test", "g4dn.metal")
    plan = startenv.plan(record, det, {"FI_EFA_USE_DEVICE_RDMA": value})
    assert startenv.shell_lines(plan) == [] and len(plan.kept) == 1
    assert startenv.describe(plan) == []  # silent: nothing changed


def test_plan_keeps_the_image_env_on_p4d(seed_image_env):
    record = startenv.load_image_env(seed_image_env)
    det = detect.Detection(resolve("p4d"), "test", "p4d")
    plan = startenv.plan(record, det, {})
    # the image's default, exported by the entrypoint rather than baked in ENV
    assert startenv.shell_lines(plan) == \
        ['{ declare -p FI_EFA_USE_DEVICE_RDMA || [ -n "${FI_EFA_USE_DEVICE_RDMA+set}" ]; } '
         '>/dev/null 2>&1 || export FI_EFA_USE_DEVICE_RDMA=1']
    assert "already fits" in startenv.describe(plan, verbose=True)[-1]
    assert startenv.describe(plan) == []  # silent: nothing changed


def test_bad_image_env_record(tmp_path):
    bad = tmp_path / "image-env.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        startenv.load_image_env(bad)


def test_entrypoint_applies_rules_for_real(seed_image_env, tmp_path):
    """Run the rendered entrypoint script with the real efa-verify, as the image does
    (it calls `efa-verify` by name: the package's entry point, first on PATH)."""
    entry = seed_image_env.parent / "entrypoint.sh"
    env = {**procs.env_with_bin(), "EFAKIT_IMAGE_ENV": str(seed_image_env), "EFAKIT_IMDS": "off",
           "EFAKIT_INSTANCE_TYPE": "g4dn.metal",
           "FI_PROVIDER": "efa", "EFAKIT_SM_RESOURCE_CONFIG": str(tmp_path / "none")}
    env.pop("FI_EFA_USE_DEVICE_RDMA", None)
    result = procs.run(
        ["sh", str(entry), "sh", "-c", 'echo "rdma=${FI_EFA_USE_DEVICE_RDMA-unset} '
         'provider=${FI_PROVIDER-unset}"'], capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "rdma=unset provider=efa"
    assert "efakit: instance" not in result.stderr  # detection only with EFAKIT_VERBOSE=1
    assert "unset FI_EFA_USE_DEVICE_RDMA" in result.stderr
    # the user's own FI_EFA_USE_DEVICE_RDMA=1, equal to the image's default, is kept
    mine = procs.run(
        ["sh", str(entry), "sh", "-c", 'echo "rdma=${FI_EFA_USE_DEVICE_RDMA-unset}"'],
        capture_output=True, text=True, env={**env, "FI_EFA_USE_DEVICE_RDMA": "1"},
        cwd=ROOT, timeout=60)
    assert mine.stdout.strip() == "rdma=1" and mine.stderr == ""
    # undetected instance: the image's default is exported, silently
    undetected = {k: v for k, v in env.items() if k != "EFAKIT_INSTANCE_TYPE"}
    default = procs.run(
        ["sh", str(entry), "sh", "-c", 'echo "rdma=${FI_EFA_USE_DEVICE_RDMA-unset}"'],
        capture_output=True, text=True, env=undetected, cwd=ROOT, timeout=60)
    assert default.stdout.strip() == "rdma=1" and default.stderr == ""


def test_entrypoint_is_silent_when_nothing_changes_unless_verbose(seed_image_env, tmp_path):
    entry = seed_image_env.parent / "entrypoint.sh"
    env = {**procs.env_with_bin(), "EFAKIT_IMAGE_ENV": str(seed_image_env), "EFAKIT_IMDS": "off",
           "EFAKIT_SM_RESOURCE_CONFIG": str(tmp_path / "none")}
    env.pop("EFAKIT_INSTANCE_TYPE", None)
    quiet = procs.run(["sh", str(entry), "true"], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == ""
    verbose = procs.run(["sh", str(entry), "true"], capture_output=True, text=True,
                             env={**env, "EFAKIT_VERBOSE": "1"}, cwd=ROOT, timeout=60)
    assert "efakit: instance not detected" in verbose.stderr


def test_env_cli_bad_record_is_exit_2(tmp_path):
    result = procs.run([*VERIFY, "env", "--image-env", str(tmp_path / "nope.json")],
                       capture_output=True, text=True)
    assert result.returncode == 2 and "cannot read the image env record" in result.stderr
