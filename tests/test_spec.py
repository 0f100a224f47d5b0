"""Image spec validation: one-line errors naming file, key and expected form."""

import copy
import subprocess
import sys

import pytest

from buildkit.spec import SpecError, load_spec
from tests.conftest import FIXTURES, ROOT


def test_the_real_spec_and_its_profiles_load():
    spec = load_spec(ROOT / "images" / "pytorch.yaml")
    assert spec.base_name == "pytorch-devel"
    assert spec.versions()["aws_ofi_nccl"] == "1.14.2"
    offline = load_spec(ROOT / "images" / "pytorch.yaml", profile="offline")
    assert "aws_ofi_nccl" not in offline.components and offline.versions()["libfabric"] == "1.17.0"
    assert load_spec(ROOT / "images" / "pytorch.yaml", base="ngc").base_name == "ngc"


def test_seed_fixture_loads():
    spec = load_spec(FIXTURES / "specs" / "seed" / "pytorch.yaml")
    assert spec.versions()["aws_ofi_nccl"] == "1.5.0"


def _set(path: str, value):
    def mutate(raw):
        *parents, leaf = path.split(".")
        node = raw
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return mutate


DELETE = object()
CHOICE = "base.choices.pytorch-devel"
BAD_SPECS = [
    ("unknown top-level key", _set("colour", "blue"), "colour: unknown key"),
    ("schema version", _set("schema_version", 2), "schema_version: expected 1"),
    ("framework mismatch", _set("framework", "jax"), "does not match the file name"),
    ("missing components", _set("components", DELETE), "components: missing"),
    ("malformed version", _set("components.efa_installer.version", "one.two"),
     "components.efa_installer.version: malformed version"),
    ("malformed digest", _set("components.efa_installer.sha256", "abc123"),
     "components.efa_installer.sha256: expected 64 lowercase hex digits"),
    ("uppercase digest", _set("components.efa_installer.sha256", "A" * 64),
     "expected 64 lowercase hex digits"),
    ("null digest without reason", _set("components.gdrcopy.reason", DELETE),
     "components.gdrcopy.reason: required when sha256 is null"),
    ("digest without provenance", _set("components.efa_installer.provenance", DELETE),
     "components.efa_installer.provenance: required with a sha256"),
    ("plain http", _set("components.nccl_tests.url", "http://example.com/x.tgz"),
     "expected an https:// URL"),
    ("unknown arch", _set("gpu_archs", ["sm_80", "sm_99"]), "gpu_archs: unknown arch 'sm_99'"),
    ("archs not a list", _set("gpu_archs", "sm_80"), "gpu_archs: expected a list"),
    ("unknown instance", _set("instance_types", ["p9.large"]), "unknown instance type 'p9.large'"),
    ("instance arch not built", _set("gpu_archs", ["sm_80"]),
     "p5.48xlarge needs sm_90, not in gpu_archs"),
    ("unclassifiable distro", _set(f"{CHOICE}.distro", "windows11"), "cannot classify distro"),
    ("unpinned base", _set(f"{CHOICE}.image", "pytorch/pytorch"), "has no tag or digest"),
    ("default base missing", _set("base.default", "nope"), "base.default: 'nope' is not one of"),
    ("unknown plugin source", _set("components.aws_ofi_nccl.source", "magic"),
     "components.aws_ofi_nccl.source: expected one of installer, build"),
    ("unknown nccl policy", _set("components.nccl.policy", "latest"),
     "components.nccl.policy: expected one of keep, pinned"),
    ("unknown component", _set("components.mystery", {"version": "1"}),
     "components.mystery: unknown key"),
    ("unknown component key", _set("components.gdrcopy.checksum", "x"),
     "components.gdrcopy.checksum: unknown key"),
    ("wrong type", _set("size_budget_GB", "thirty"),
     "size_budget_GB: expected an integer or a number"),
    ("negative budget", _set("size_budget_GB", -1), "size_budget_GB: expected a positive number"),
    ("bad variant", _set("variants.lambda", {}), "variants.lambda: unknown key"),
    ("bad env name", _set("env_extra", {"nccl_debug": "INFO"}), "env_extra.nccl_debug"),
    ("bad fingerprint", _set("components.efa_installer.signature.key_fingerprint", "1234"),
     "expected 40 uppercase hex digits"),
    ("forbidden combination", _set("components.aws_ofi_nccl.version", "1.5.0"),
     "forbidden combination: aws_ofi_nccl 1.5.0 does not meet >=1.7.2"),
    ("bad profile key", _set("profiles.offline.colour", "red"), None),
]


@pytest.mark.parametrize("name,mutate,message", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_gives_one_line_error(name, mutate, message, pytorch_spec_raw, write_spec):
    raw = copy.deepcopy(pytorch_spec_raw)
    mutate(raw)
    path = write_spec(raw)
    profile = "offline" if name == "bad profile key" else None
    with pytest.raises(SpecError) as info:
        load_spec(path, profile=profile)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(path))
    assert (message or "profiles.offline.colour: unknown key") in text


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "pytorch.yaml"
    path.write_text("schema_version: 1\nbase: [unclosed\n")
    with pytest.raises(SpecError, match=r"pytorch.yaml:\d+: invalid YAML"):
        load_spec(path)


def test_unknown_profile(tmp_path):
    with pytest.raises(SpecError, match="no profile 'fast'.*offline"):
        load_spec(ROOT / "images" / "pytorch.yaml", profile="fast")


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "buildkit.cli", "render", "nope", "-o",
                             str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no image spec for framework 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_update_pins_writes_digest_and_provenance_keeping_comments(tmp_path):
    from buildkit.mirror import write_pins

    spec = tmp_path / "pytorch.yaml"
    spec.write_text((ROOT / "images" / "pytorch.yaml").read_text())
    digest = "ab" * 32
    url = "https://github.com/NVIDIA/gdrcopy/archive/refs/tags/v2.4.4.tar.gz"
    assert write_pins(spec, {"gdrcopy": (digest, url)}, "2026-11-25") == ["gdrcopy"]
    text = spec.read_text()
    assert text.startswith("# PyTorch training image")  # comments survive
    loaded = load_spec(spec)
    gdr = loaded.components["gdrcopy"]
    assert gdr["sha256"] == digest and "reason" not in gdr
    assert gdr["provenance"] == f"computed by efakit fetch-artifacts --update-pins from {url} on 2026-11-25"
    assert loaded.components["nccl_tests"]["sha256"] is None  # untouched
    assert load_spec(spec, profile="offline").components.get("gdrcopy") is None
