"""What aws-ofi-nccl sets by itself, per instance, read from its own source.

The env rules' `plugin_sets` facts and explain-env's "(plugin sets ...)" were copied
by hand and drifted (issue 27: the flush shown for p5/p5e/p5en only, the NVLS chunk
sizes missing, a BUFFSIZE claimed on g4dn.metal, which has no entry).  This test reads
the platform table of the pinned release from the source archive (../shared/artifacts/
sources, SOURCES.md) and fails on any disagreement, for every instance profile.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass

import pytest

from buildkit.explain import explain_env, to_text
from tests.conftest import ROOT, missing
from verify import envrules
from verify.profiles import all_profiles

SOURCES = ROOT.parent / "shared" / "artifacts" / "sources"
PLATFORM_FILE = "src/platform-aws.cpp"
ENTRY = re.compile(r'\{\s*\.name = "(?P<name>[^"]*)",(?:\s*/\*.*?\*/)?\s*\.regex = (?:NULL|"(?P<regex>[^"]*)"),'
                   r'(?P<body>[^{}]*?)\.env = \{(?P<env>(?:\s*\{[^{}]*\},?)*)\s*\},\s*\}', re.S)
PAIR = re.compile(r'\{\s*"(?P<var>[A-Z0-9_]+)",\s*"(?P<value>[^"]*)"\s*\}')


@dataclass(frozen=True)
class Platform:
    """One row of aws-ofi-nccl's platform_data_map."""

    name: str
    regex: str | None  # POSIX ERE (regexec: unanchored search); None: exact name
    env: dict[str, str]

    def matches(self, instance: str) -> bool:
        return instance == self.name if self.regex is None else \
            re.search(self.regex, instance) is not None


def platform_table(version: str) -> list[Platform]:
    """The table in the archive of `version`, in its order (first match wins)."""
    archive = SOURCES / f"aws-ofi-nccl-{version}.tar.gz"
    if not archive.is_file():
        missing("sources", f"{archive} is absent (the shared source mirror, "
                           "shared/artifacts/SOURCES.md)")
    with tarfile.open(archive) as tar:
        member = tar.extractfile(f"aws-ofi-nccl-{version}/{PLATFORM_FILE}")
        assert member is not None, f"{PLATFORM_FILE} missing from {archive.name}"
        text = member.read().decode()
    table = text.split("platform_data_map[] = {", 1)[1].split("\n};", 1)[0]
    rows = [Platform(m["name"], m["regex"].replace("\\\\", "\\") if m["regex"] else None,
                     {p["var"]: p["value"] for p in PAIR.finditer(m["env"])})
            for m in ENTRY.finditer(table)]
    assert len(rows) >= 10 and rows[0].name == "p4d.24xlarge", [r.name for r in rows]
    return rows


def plugin_env(table: list[Platform], instance: str) -> dict[str, str]:
    """What the plugin injects on `instance` (NCCL_OFI's get_platform_entry)."""
    return next((row.env for row in table if row.matches(instance)), {})


VERSION = envrules.plugin_facts()["aws_ofi_nccl"]
VERSIONS = {"aws_ofi_nccl": VERSION, "aws_ofi_nccl_source": "installer",
            "libfabric": "2.6.0", "nccl": "2.29.7", "efa_installer": "1.50.0", "cuda": "13.0"}


@pytest.fixture(scope="module")
def table() -> list[Platform]:
    return platform_table(VERSION)


def test_the_facts_name_the_release_the_image_pins():
    import yaml

    spec = yaml.safe_load((ROOT / "images" / "pytorch.yaml").read_text())
    assert spec["components"]["aws_ofi_nccl"]["version"] == VERSION


def test_every_platform_variable_has_an_env_rule(table):
    ruled = {d.var for d in envrules.explain(VERSIONS, None)}
    assert {var for row in table for var in row.env} <= ruled


def test_env_rules_say_what_the_plugin_sets_on_every_instance(table):
    """Per profile: each variable the platform table names is `plugin_sets` with the same
    value exactly where the plugin's first matching entry sets it."""
    names = {var for row in table for var in row.env}
    wrong = []
    for name, profile in all_profiles().items():
        sets = plugin_env(table, name)
        decisions = {d.var: d for d in envrules.explain(VERSIONS, profile)}
        for var in sorted(names):
            if decisions[var].plugin_sets != sets.get(var):
                wrong.append(f"{name} {var}: rules say {decisions[var].plugin_sets!r}, "
                             f"aws-ofi-nccl {VERSION} sets {sets.get(var)!r}")
    assert not wrong, "\n".join(wrong)


def test_explain_env_shows_the_plugin_values_and_the_source_release(table):
    profiles = list(all_profiles().values())
    doc = explain_env(VERSIONS, profiles, {})
    names = {var for row in table for var in row.env}
    for variable in doc["variables"]:
        if variable["var"] not in names:
            continue
        for profile in profiles:
            cell = variable["by_instance"][profile.name]
            assert cell["plugin_sets"] == plugin_env(table, profile.name).get(variable["var"]), \
                (profile.name, variable["var"])
    text = to_text(doc, "pytorch")
    assert f"aws-ofi-nccl {VERSION} {PLATFORM_FILE}" in text


@pytest.mark.parametrize(("instance", "entry"), [
    ("p4d.24xlarge", "p4d.24xlarge"), ("p5.48xlarge", "p5/p5e"), ("p5e.48xlarge", "p5/p5e"),
    ("p5en.48xlarge", "p5en/p6-b200"), ("p6-b200.48xlarge", "p5en/p6-b200"),
    ("p6-b300.48xlarge", "p6-b300"), ("p6e-gb200.36xlarge", "p-series"),
    ("g5.48xlarge", "g5.48xlarge"), ("g4dn.metal", None), ("g6e.48xlarge", None),
])
def test_platform_entries_match_as_the_plugin_matches(table, instance, entry):
    """The same mapping as the plugin's own unit test (tests/unit/aws_platform_mapper.cpp)."""
    found = next((row.name for row in table if row.matches(instance)), None)
    assert found == entry
