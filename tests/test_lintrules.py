"""Base facts and the lint rules over rendered Dockerfiles (issue 25).

Each rule is shown to catch the production review's finding on the Dockerfile that
was rendered before the fixes (tests/fixtures/before-issue-25, the goldens at f268897),
and to be quiet on every Dockerfile rendered now; the facts table is validated, and the
probe's output is compared with it the way `make base-facts` does.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from buildkit import basefacts
from buildkit.lintrules import RULES, instructions, lint_bases, lint_dockerfile
from buildkit.render import RenderError, context_values, render_dockerfile
from buildkit.spec import load_spec
from tests.conftest import FIXTURES, ROOT

BEFORE = FIXTURES / "before-issue-25"
GOLDEN = ROOT / "tests" / "golden"
PYTORCH = ROOT / "images" / "pytorch.yaml"

# rule -> (the pre-fix Dockerfile it catches, the stage, what the message names)
CAUGHT = {
    "installer-apt-lists": ("default-pytorch-runtime-ec2", "final", "apt-get update"),
    "python-exists": ("default-pytorch-runtime-ec2", "final", "/opt/conda/bin/python"),
    "pep668": ("default-cuda-runtime-ec2", "final", "PEP 668"),
    "held-packages": ("default-cuda-runtime-ec2", "final", "libnccl2"),
    "cudart-where-cuda-is": ("default-pytorch-runtime-ec2", "final", "cuda wheels"),
    "ngc-marker-flags": ("default-cuda-runtime-ec2", "final", "--disable-ngc"),
    "ngc-rdma-core": ("default-ngc-ec2", "final", "--disable-build-ngc"),
    "hpcx-kept": ("default-ngc-ec2", "final", "/opt/hpcx"),
    "no-silent-fallback": ("default-pytorch-runtime-ec2", "final", "|| true"),
    "opal-prefix": ("default-ngc-ec2", "final", "OPAL_PREFIX"),
}


def test_every_rule_has_a_case():
    assert {r.name for r in RULES} | {"opal-prefix"} == set(CAUGHT)


@pytest.mark.parametrize("rule", sorted(CAUGHT))
def test_rule_catches_its_finding_before_the_fix(rule):
    name, stage, words = CAUGHT[rule]
    problems = lint_dockerfile((BEFORE / f"{name}.Dockerfile").read_text())
    hits = [p for p in problems if p.rule == rule and p.stage == stage]
    assert hits, f"{rule} silent on {name}: {[p.text() for p in problems]}"
    assert words in hits[0].message and hits[0].finding


def test_cuda_runtime_python_missing_before_the_fix():
    problems = lint_dockerfile((BEFORE / "default-cuda-runtime-ec2.Dockerfile").read_text())
    assert any(p.rule == "python-exists" and "python none" in p.message for p in problems)


@pytest.mark.parametrize("golden", sorted(p.name for p in GOLDEN.glob("*.Dockerfile")))
def test_rendered_dockerfiles_are_clean(golden):
    assert [p.text() for p in lint_dockerfile((GOLDEN / golden).read_text())] == []


def test_lint_covers_every_base_and_variant():
    assert lint_bases(PYTORCH, None) == []
    assert lint_bases(PYTORCH, "offline") == []


def test_a_held_package_removed_without_the_flag_is_refused():
    text = (GOLDEN / "default-cuda-runtime-ec2.Dockerfile").read_text()
    assert "--allow-change-held-packages" in text
    broken = text.replace(" --allow-change-held-packages", "")
    assert [p.rule for p in lint_dockerfile(broken)] == ["held-packages"]


def test_installer_after_lists_deleted_in_an_earlier_step():
    text = (GOLDEN / "default-ngc-ec2.Dockerfile").read_text()
    broken = text.replace(" && apt-get update \\\n && ./efa_installer.sh",
                          " && ./efa_installer.sh")
    assert {p.rule for p in lint_dockerfile(broken)} == {"installer-apt-lists"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["RUN a \\", "  && b \\", "  c", "# note", "", "ENV X=1"]),
                max_size=12))
def test_instructions_join_continuations(lines):
    """Comments never reach an instruction; every word of a finished instruction is kept
    once, in order (a continuation still open at the end is not an instruction)."""
    text = "\n".join(lines) + "\n"
    found = list(instructions(text))
    assert all("note" not in args for _, _, args in found)
    words = [w for _, word, args in found for w in [word, *args.split()]]
    kept = [w for line in lines if not line.strip().startswith("#")
            for w in line.replace("\\", " ").split()]
    assert [w.lower() for w in words] == [w.lower() for w in kept[:len(words)]]


# --- the facts table ------------------------------------------------------------------

def test_every_production_base_and_builder_has_facts():
    for name in ("pytorch-runtime", "cuda-runtime", "ngc"):
        spec = load_spec(PYTORCH, base=name)
        base = basefacts.for_image(spec.base["image"])
        assert base.name == name
        builder = basefacts.for_image(spec.base.get("builder_image") or spec.base["image"])
        assert builder.name == (base.builder or base.name)


def test_an_image_without_facts_is_refused(tmp_path):
    raw = yaml.safe_load(PYTORCH.read_text())
    raw["base"]["choices"]["pytorch-runtime"]["image"] = "example/unknown:1"
    spec_file = tmp_path / "pytorch.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    spec = load_spec(spec_file)
    with pytest.raises(RenderError, match="no base facts for image example/unknown:1"):
        context_values(spec, "ec2")


def test_facts_need_a_source():
    raw = yaml.safe_load(basefacts.FACTS_FILE.read_text())
    broken = copy.deepcopy(raw)
    del broken["bases"]["ngc"]["facts"]["hpcx"]["source"]
    with pytest.raises(basefacts.FactsError, match="ngc.facts.hpcx: needs value"):
        basefacts.parse(broken, "t")
    broken = copy.deepcopy(raw)
    broken["bases"]["ngc"]["facts"]["cuda"]["value"] = "somewhere"
    with pytest.raises(basefacts.FactsError, match="cuda: value 'somewhere'"):
        basefacts.parse(broken, "t")


def test_render_follows_the_facts():
    """Each fix comes from a fact: python, PEP 668, CUDA layout, held packages, the marker."""
    def text(base: str) -> str:
        return render_dockerfile(context_values(load_spec(PYTORCH, base=base), "ec2"))
    runtime, cuda, ngc = text("pytorch-runtime"), text("cuda-runtime"), text("ngc")
    assert "/opt/conda" not in runtime and "import nvidia.cu13" in runtime
    # --disable-ngc where the image has NVIDIA's marker (issue 28 item 2): the cuda-devel
    # builder, cuda-runtime, ngc; not PyTorch's runtime image (FROM ubuntu)
    assert "--disable-ngc" not in runtime.split("AS nccl-tests")[1]
    for dockerfile in (runtime, cuda, ngc):
        builder = dockerfile.split("AS gdrcopy")[0]
        assert "--disable-ngc --disable-build-ngc" in builder
    assert cuda.count("--disable-ngc --disable-build-ngc") == 2
    assert ngc.count("--disable-ngc --disable-build-ngc") == 2
    assert "        python3-pip \\" in cuda.split("AS nccl-tests")[1]
    assert "--allow-change-held-packages" in cuda
    assert "ENV PIP_BREAK_SYSTEM_PACKAGES=1" in cuda and "ENV PIP_BREAK_SYSTEM_PACKAGES=1" in ngc
    assert "rm -rf /opt/hpcx/nccl_rdma_sharp_plugin" in ngc and "OPAL_PREFIX=/opt/amazon" in ngc
    for dockerfile in (runtime, cuda, ngc):
        assert dockerfile.count("apt-get update \\\n && ./efa_installer.sh") == 2


# --- make base-facts: the comparison ---------------------------------------------------

PROBED_RUNTIME = """python=/usr/bin/python3
pip_externally_managed=true
cuda=wheels
apt_lists=false
held_packages=
ngc_marker=false
hpcx=
opal_prefix=
nccl=wheel
"""


def test_probe_output_matching_the_table():
    row = basefacts.table()["pytorch-runtime"]
    assert basefacts.differences(row, basefacts.observed(PROBED_RUNTIME)) == []


def test_probe_output_differing_names_each_fact():
    row = basefacts.table()["pytorch-runtime"]
    seen = basefacts.observed(PROBED_RUNTIME.replace("python=/usr/bin/python3",
                                                     "python=/opt/conda/bin/python3")
                              .replace("held_packages=", "held_packages=libnccl2 "))
    diff = basefacts.differences(row, seen)
    assert [d.split(":")[0] for d in diff] == ["python", "held_packages"]
    assert "/opt/conda/bin/python3" in diff[0]


def test_a_fact_the_probe_cannot_see_is_not_compared():
    row = basefacts.table()["cuda-runtime"]
    seen = basefacts.observed("python=\ncuda=runtime\napt_lists=false\n"
                              "held_packages=libnccl2\nngc_marker=true\nhpcx=\nopal_prefix=\n"
                              "nccl=system\n")
    assert "pip_externally_managed" not in seen
    assert basefacts.differences(row, seen) == []


def test_base_facts_cli_bad_table_is_one_line(tmp_path, capsys):
    bad = tmp_path / "facts.yaml"
    bad.write_text("schema_version: 1\nbases: []\n")
    assert basefacts.main(["check", "--facts", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bases mapping" in err


def test_probe_script_is_posix_sh():
    script = Path(basefacts.PROBE_SCRIPT)
    import subprocess
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0


def test_standin_spec_renders_lint_clean(tmp_path):
    """The spec the stand-in builds use (stand-in references, one arch, the mirror) renders
    for every base from the same facts and passes every rule: what the Docker tests build
    is the production template, not a variant of it."""
    raw = yaml.safe_load(PYTORCH.read_text())
    rows = basefacts.table()
    for name, choice in raw["base"]["choices"].items():
        choice["image"] = rows[name].stand_in
        if "builder_image" in choice:
            choice["builder_image"] = rows["cuda-devel"].stand_in
    raw["gpu_archs"], raw["instance_types"] = ["sm_90"], ["p5.48xlarge"]
    raw["artifacts"]["mirror"] = str(tmp_path / "mirror")
    spec_file = tmp_path / "pytorch.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    for name in ("pytorch-runtime", "cuda-runtime", "ngc"):
        spec = load_spec(spec_file, base=name)
        text = render_dockerfile(context_values(spec, "ec2"))
        assert f"FROM {rows[name].stand_in}" in text
        assert lint_dockerfile(text) == []


INSTALLER = ROOT / "tests" / "standins" / "installer" / "efa_installer.sh"


@pytest.mark.parametrize("args,words", [
    (["-y", "--skip-kmod", "--bogus"], "Unknown option: --bogus"),
    (["--skip-kmod", "--no-verify"], "not run with -y"),
])
def test_standin_installer_refuses_before_touching_anything(args, words):
    import subprocess
    done = subprocess.run(["bash", str(INSTALLER), *args], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1 and words in done.stderr


def test_lint_json_schema_knows_base_fact_problems(tmp_path):
    import json

    import jsonschema

    schema = json.loads((ROOT / "verify" / "schema" / "lint.schema.json").read_text())
    raw = yaml.safe_load(PYTORCH.read_text())
    raw["base"]["choices"]["pytorch-runtime"]["python"] = "/opt/conda/bin/python"
    spec_file = tmp_path / "pytorch.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    problems = [{"kind": "base-facts", "message": m} for m in lint_bases(spec_file, None)]
    assert any("/opt/conda/bin/python" in p["message"] for p in problems)
    jsonschema.validate({"schema_version": 1, "framework": "pytorch", "profile": None,
                         "variants": ["ec2"], "hadolint": False, "clean": False,
                         "problems": problems}, schema)
