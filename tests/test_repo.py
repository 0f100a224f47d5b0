"""Repository contracts: the README's exit-code table, the workflow, the make targets."""

import re

from tests import procs
from tests.conftest import ROOT, tool
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
