"""Golden files: the exact Dockerfile text per variant, base and profile.

A deliberate template or spec change is reviewed as a diff of these files;
`make golden` (EFAKIT_UPDATE_GOLDEN=1) regenerates them.
"""

import difflib
import json
import os
import sys
from pathlib import Path

import pytest

from buildkit.render import render_context
from buildkit.spec import load_spec
from tests import procs
from tests.conftest import FIXTURES, ROOT

GOLDEN = ROOT / "tests" / "golden"
PYTORCH = ROOT / "images" / "pytorch.yaml"
SEED = FIXTURES / "specs" / "seed" / "pytorch.yaml"
CASES = [
    (PYTORCH, None, base, variant)
    for base in ("pytorch-runtime", "ngc", "cuda-runtime") for variant in ("ec2", "sagemaker")
] + [(PYTORCH, "offline", None, "ec2"), (PYTORCH, "offline", None, "sagemaker"),
     (SEED, None, None, "ec2")]


def _name(spec_file: Path, profile, base, variant) -> str:
    origin = "seed" if spec_file == SEED else (profile or "default")
    return f"{origin}-{base or 'default'}-{variant}.Dockerfile"


@pytest.mark.parametrize("spec_file,profile,base,variant", CASES,
                         ids=[_name(*c) for c in CASES])
def test_dockerfile_matches_golden(spec_file, profile, base, variant, tmp_path):
    spec = load_spec(spec_file, profile=profile, base=base)
    out = render_context(spec, variant, tmp_path / "ctx")
    actual = (out / "Dockerfile").read_text()
    golden = GOLDEN / _name(spec_file, profile, base, variant)
    if os.environ.get("EFAKIT_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual)
    expected = golden.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            str(golden), "rendered"))
        pytest.fail(f"rendered Dockerfile differs from {golden.name} "
                    f"(run `make golden` if intended):\n{diff}")


def test_seed_spec_renders_the_seed_variables(tmp_path):
    out = render_context(load_spec(SEED), "ec2", tmp_path / "ctx")
    text = (out / "Dockerfile").read_text()
    for line in ("FI_PROVIDER=efa", "NCCL_PROTO=simple",
                 "NCCL_LAUNCH_MODE=PARALLEL", "NCCL_NET_SHARED_COMMS=0"):
        assert line in text
    assert "--enable-platform-aws" in text
    # g4dn has no RDMA read: the entrypoint exports it, so a user's own value is never undone
    assert "FI_EFA_USE_DEVICE_RDMA" not in text
    record = json.loads((out / "efakit" / "image-env.json").read_text())
    assert record["start_defaults"] == {"FI_EFA_USE_DEVICE_RDMA": "1"}


def test_modern_spec_renders_none_of_the_needless_variables(tmp_path):
    out = render_context(load_spec(PYTORCH), "ec2", tmp_path / "ctx")
    text = (out / "Dockerfile").read_text()
    for name in ("FI_PROVIDER", "NCCL_PROTO", "FI_EFA_USE_DEVICE_RDMA", "NCCL_ALGO"):
        assert f"{name}=" not in text


def test_dockerfiles_stay_within_docker_2010_buildkit(tmp_path):
    """No heredocs, COPY --link, ADD --checksum or # syntax= (they need a newer frontend)."""
    for spec_file, profile, base, variant in CASES:
        out = render_context(load_spec(spec_file, profile=profile, base=base), variant,
                             tmp_path / _name(spec_file, profile, base, variant))
        text = (out / "Dockerfile").read_text()
        assert "<<" not in text and "--link" not in text and "--checksum" not in text
        assert "# syntax=" not in text


def test_render_is_byte_identical_and_atomic(tmp_path):
    def run(dest):
        return procs.run([sys.executable, "-m", "buildkit.cli", "render", "pytorch",
                          "-o", str(dest)], capture_output=True, text=True, cwd=ROOT)

    assert run(tmp_path / "a").returncode == 0
    assert run(tmp_path / "b").returncode == 0
    diff = procs.run(["diff", "-r", str(tmp_path / "a"), str(tmp_path / "b")],
                     capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    assert Path("ec2/Dockerfile") in files and Path("ec2/efakit/image-env.json") in files
    assert not list(tmp_path.glob(".*"))  # no temporary directories left behind


def test_every_component_version_is_labelled(tmp_path):
    out = render_context(load_spec(PYTORCH), "ec2", tmp_path / "ctx")
    text = (out / "Dockerfile").read_text()
    for label, value in (("efa-installer", "1.50.0"), ("aws-ofi-nccl", "1.21.1"),
                         ("libfabric", "2.6.0amzn1.0"), ("rdma-core", "64.0"),
                         ("nccl", "2.29.7"), ("gdrcopy", "2.6"), ("nccl-tests", "2.19.6"),
                         ("torch", "2.13.0"), ("cuda", "13.0")):
        assert f'dev.efakit.version.{label}="{value}"' in text
