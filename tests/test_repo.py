"""Repository contracts: the README's exit-code table, the workflow, the make targets."""

import re

import pytest

from tests import procs
from tests.conftest import ROOT, tool
from tests.procs import EFAKIT
from verify.exitcodes import DESCRIPTIONS, Exit


def test_readme_exit_code_table_matches_the_enum():
    text = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|", text, re.M))
    assert {int(code) for code in rows} == {int(e) for e in Exit}
    for code, description in DESCRIPTIONS.items():
        assert rows[str(int(code))] == description


def test_readme_has_exactly_the_two_setup_commands_and_ci_runs_the_test_one():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Set up\n(.*?)\n## ", text, re.S).group(1)
    commands = re.findall(r"^    (\S.*)$", block, re.M)
    assert commands == ["make ci-image", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_workflow_is_valid_for_github():
    proc = procs.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                      str(ROOT / ".github" / "workflows" / "image-gate.yml")],
                     capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_only_calls_make_targets():
    text = (ROOT / ".github" / "workflows" / "image-gate.yml").read_text()
    runs = re.findall(r"^\s+run: (.*)$", text, re.M)
    assert runs and all(cmd.startswith("make ") for cmd in runs)
    makefile = (ROOT / "Makefile").read_text()
    for cmd in runs:
        target = cmd.split()[1]
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_third_party_licenses_list_every_component_with_its_table_license():
    from verify.components import components

    text = (ROOT / "THIRD_PARTY_LICENSES.md").read_text()
    rows = dict(re.findall(r"^\| ([\w-]+) \| ([^|]+?) \|", text, re.M))
    for comp in components().values():
        assert comp.label in rows, comp.label
        assert rows[comp.label] == (comp.spdx or "several (AWS's bundle)"), comp.label
        if comp.license:
            assert comp.licenses_dir() in text and all(f in text for f in comp.license)


def test_the_root_has_what_an_open_source_user_looks_for():
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    for name in ("CONTRIBUTING.md", "CHANGELOG.md", "THIRD_PARTY_LICENSES.md"):
        assert (ROOT / name).is_file(), name


def test_efakit_help_carries_the_exit_code_table():
    text = procs.run([*EFAKIT, "--help"], capture_output=True, text=True).stdout
    for code, description in DESCRIPTIONS.items():
        assert re.search(rf"^\s+{int(code)}\s+{re.escape(description)}$", text, re.M), code


@pytest.mark.parametrize("value, flagged", [("1", True), ("", False), ("0", False)])
def test_make_image_passes_allow_unpinned(value, flagged):
    proc = procs.run(["make", "-n", "-C", str(ROOT), "image", f"ALLOW_UNPINNED={value}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert ("--allow-unpinned" in proc.stdout) == flagged
def test_plain_install_brings_the_host_cli_and_images_install_the_verifier_only():
    """`pip install efakit` renders, lints and validates without an extra; images install
    [tool.efakit] image-dependencies, each also a plain dependency, and no host library."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    plain = pyproject["project"]["dependencies"]
    image = pyproject["tool"]["efakit"]["image-dependencies"]
    names = {re.split(r"[<>=;\[ ]", d, maxsplit=1)[0].lower() for d in plain}
    assert {"jinja2", "jsonschema", "boto3"} <= names
    assert set(image) <= set(plain)
    image_names = {re.split(r"[<>=;\[ ]", d, maxsplit=1)[0].lower() for d in image}
    assert image_names.isdisjoint({"jinja2", "jsonschema", "boto3", "matplotlib"})
    from buildkit.render import verifier_dependencies

    assert [d.strip("'") for d in verifier_dependencies()] == image


def test_tests_name_images_only_in_their_own_namespace():
    """No test names an image of the user's namespace (efakit/...): the CI images come
    from conftest's CI_EC2/CI_SAGEMAKER in efakit-test/, every `efakit build` a test runs
    gets EFAKIT_NAMESPACE=efakit-test, and make ci-image is called with NAMESPACE= set.
    The read-only base image the offline spec builds FROM is the one exception, and the
    build context's efakit/*.sh scripts are files, not images."""
    from tests import conftest

    # efakit/*.sh are build-context scripts in recorded BuildKit lines, not images.
    user_refs = re.compile(r"(?<![\w/.-])efakit/(?!base:bookworm\b|[\w-]+\.sh\b)[a-z][\w.-]*")
    found = {path.name: user_refs.findall(path.read_text())
             for path in (ROOT / "tests").glob("*.py")}
    assert {name: refs for name, refs in found.items() if refs} == {}
    assert conftest.CI_EC2.startswith(conftest.TEST_NAMESPACE + "/")
    assert "NAMESPACE=" in (ROOT / "tests" / "conftest.py").read_text()
    make = procs.run(["make", "-n", "ci-image", "NAMESPACE=efakit-test"], cwd=ROOT,
                     capture_output=True, text=True)
    builds = [line for line in make.stdout.splitlines() if "efakit build" in line
              or "--namespace" in line]
    assert builds and make.stdout.count("--namespace efakit-test") == 2, make.stdout


def test_build_namespace_is_checked_before_anything_runs(monkeypatch):
    import os

    from buildkit.build import image_repo

    assert os.environ["EFAKIT_NAMESPACE"] == "efakit-test"  # every test's `efakit build`
    assert image_repo("efakit-test", "pytorch") == "efakit-test/pytorch"
    proc = procs.run([*EFAKIT, "build", "pytorch", "--namespace", "Bad NS"], cwd=ROOT,
                     capture_output=True, text=True,
                     env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--namespace 'Bad NS': not a Docker repository path" in proc.stderr
