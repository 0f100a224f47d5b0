"""Image spec validation: one-line errors naming file, key and expected form."""

import copy
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildkit.spec import SpecError, load_spec
from tests import procs
from tests.conftest import FIXTURES, ROOT
from verify import envrules


def test_the_real_spec_and_its_profiles_load():
    spec = load_spec(ROOT / "images" / "pytorch.yaml")
    assert spec.base_name == "pytorch-runtime"
    assert spec.versions()["aws_ofi_nccl"] == "1.21.1"
    assert spec.versions()["libfabric"] == "2.6.0amzn1.0"  # the installer's bundle
    assert spec.gpu_archs == ["sm_80", "sm_90", "sm_100"]
    offline = load_spec(ROOT / "images" / "pytorch.yaml", profile="offline")
    assert "efa_installer" not in offline.components
    assert offline.components["aws_ofi_nccl"]["source"] == "archive"
    assert offline.versions()["libfabric"] == "2.6.0"
    assert load_spec(ROOT / "images" / "pytorch.yaml", base="ngc").base_name == "ngc"


def test_the_sagemaker_toolkit_is_pinned_in_the_spec_and_the_mirror():
    from buildkit.mirror import WHEEL_SETS

    spec = load_spec(ROOT / "images" / "pytorch.yaml")
    packages = spec.variants["sagemaker"]["packages"]
    assert any(p.startswith("sagemaker-training==") for p in packages)
    assert WHEEL_SETS["sagemaker"] == "{sagemaker}"  # the mirror downloads exactly these


def test_a_variant_declared_without_a_body_adds_no_packages(pytorch_spec_raw, write_spec):
    """`sagemaker:` with nothing under it is a valid spec: the mirror's wheel sets and the
    renderer read its packages as none (fetch-artifacts raised AttributeError here)."""
    from buildkit.mirror import WHEEL_SETS

    raw = copy.deepcopy(pytorch_spec_raw)
    raw["variants"]["sagemaker"] = None
    spec = load_spec(write_spec(raw), profile="offline")
    assert spec.packages("sagemaker") == [] and spec.packages("absent") == []
    assert WHEEL_SETS["sagemaker"].format(sagemaker=" ".join(spec.packages("sagemaker"))) == ""
    assert load_spec(ROOT / "images" / "pytorch.yaml").packages("sagemaker") == \
        ["sagemaker-training==5.1.4", "mpi4py==4.1.2"]


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
CHOICE = "base.choices.pytorch-runtime"
RELEASE = {"version": "2.6", "source": "release", "url": "https://example.com/gdrcopy-2.6.tgz"}
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
    ("null digest without reason", _set("components.gdrcopy", {**RELEASE, "sha256": None}),
     "components.gdrcopy.reason: required when sha256 is null"),
    ("no pin at all", _set("components.gdrcopy", RELEASE),
     "components.gdrcopy.sha256: missing (pin sha256, sha512 or tree"),
    ("two pins", _set("components.gdrcopy.sha256", "ab" * 32), "pinned twice (sha256, tree)"),
    ("malformed tree", _set("components.gdrcopy.tree", "xyz"),
     "components.gdrcopy.tree: expected 40 lowercase hex digits"),
    ("short sha512", _set("components.gdrcopy", {**RELEASE, "sha512": "ab" * 32,
                                                 "provenance": "x"}),
     "components.gdrcopy.sha512: expected 128 lowercase hex digits"),
    ("archive pinned by a file digest", _set("components.gdrcopy", {
        **RELEASE, "source": "archive", "sha256": "ab" * 32, "provenance": "x"}),
     "components.gdrcopy.tree: a source archive is pinned by its content tree id"),
    ("file name with a path", _set("components.gdrcopy.file", "../x.tgz"),
     "components.gdrcopy.file: '../x.tgz' is not a plain file name"),
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
     "components.aws_ofi_nccl.source: expected one of installer, archive, release"),
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
    ("unpinned variant package", _set("variants.sagemaker.packages", ["sagemaker-training"]),
     "variants.sagemaker.packages.0: 'sagemaker-training' is not a pin"),
    ("bad env name", _set("env_extra", {"nccl_debug": "INFO"}), "env_extra.nccl_debug"),
    # attack-2 SA-9: image ENV that runs or redirects every command
    ("env LD_PRELOAD", _set("env_extra", {"LD_PRELOAD": "/tmp/evil.so"}), "env_extra.LD_PRELOAD"),
    ("env BASH_ENV", _set("env_extra", {"BASH_ENV": "/tmp/evil.sh"}), "env_extra.BASH_ENV"),
    ("env PATH", _set("env_extra", {"PATH": "/tmp/evil:/usr/bin"}), "env_extra.PATH"),
    ("bad fingerprint", _set("components.efa_installer.signature.key_fingerprint", "1234"),
     "expected 40 uppercase hex digits"),
    ("forbidden combination", _set("components.aws_ofi_nccl.version", "1.5.0"),
     "forbidden combination: aws_ofi_nccl 1.5.0 does not meet >=1.7.2"),
    ("bad profile key", _set("profiles.offline.colour", "red"), None),
]


def test_a_release_tarball_pinned_by_sha512_loads(pytorch_spec_raw, write_spec):
    raw = copy.deepcopy(pytorch_spec_raw)
    raw["components"]["gdrcopy"] = {**RELEASE, "sha512": "ab" * 64, "provenance": "release notes"}
    assert load_spec(write_spec(raw)).components["gdrcopy"]["sha512"] == "ab" * 64


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
    result = procs.run([sys.executable, "-m", "buildkit.cli", "render", "nope", "-o",
                        str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no image spec for framework 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_update_pins_writes_digest_and_provenance_keeping_comments(tmp_path):
    from buildkit.mirror import write_pins

    spec = tmp_path / "pytorch.yaml"
    text = (ROOT / "images" / "pytorch.yaml").read_text()
    unpinned = text.replace(
        "    sha256: fa6dff8593d866866c13cb4640d9059835cd4efa427971f100ab40c97bef2841\n"
        "    provenance:", "    sha256: null\n    reason:", 1)
    assert unpinned != text
    spec.write_text(unpinned)
    assert load_spec(spec).components["efa_installer"]["sha256"] is None
    digest = "ab" * 32
    url = "https://efa-installer.amazonaws.com/aws-efa-installer-1.50.0.tar.gz"
    assert write_pins(spec, {"efa_installer": (digest, url)}, "2026-11-25") == ["efa_installer"]
    assert spec.read_text().startswith("# PyTorch training image")  # comments survive
    loaded = load_spec(spec)
    installer = loaded.components["efa_installer"]
    assert installer["sha256"] == digest and "reason" not in installer
    assert installer["provenance"] == \
        f"computed by efakit fetch-artifacts --update-pins from {url} on 2026-11-25"
    assert loaded.components["gdrcopy"]["tree"]  # untouched


# write_spec rewrites one file per call: reusing the fixture across examples is safe
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True),
                      st.sampled_from(["LD_PRELOAD", "BASH_ENV", "PATH", "ENV", "IFS",
                                       "NCCL_DEBUG", "FI_PROVIDER", "RDMAV_FORK_SAFE"])))
def test_env_extra_takes_exactly_the_start_steps_names(name, pytorch_spec_raw, write_spec):
    """attack-2 SA-9: env_extra (image ENV) follows env_rules.yaml's start_names
    allow-list; the schema's pattern and the data agree for every upper-case name."""
    raw = copy.deepcopy(pytorch_spec_raw)
    raw["env_extra"] = {name: "1"}
    try:
        load_spec(write_spec(raw))
        loaded = True
    except SpecError as exc:
        assert "\n" not in str(exc) and f"env_extra.{name}" in str(exc)
        loaded = False
    assert loaded == envrules.exportable(name)
