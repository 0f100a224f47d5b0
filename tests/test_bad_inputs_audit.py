"""Every case of the bad-input audit maps to a test that covers it.

tests/bad_inputs_audit.yaml names, per audit id, the test case (or the test whose every
case is of that audit case's class).  This fails when the audit has an id the table
lacks, or when a named test does not exist (renamed, dropped, a parameter changed)."""

from __future__ import annotations

import re
import sys

import yaml

from tests import procs
from tests.conftest import ROOT

# The project's own audit of 2026-12-01 (214 cases), kept with the tests it drove.
AUDIT = ROOT / "tests" / "fixtures" / "audits" / "bad-inputs-2026-12-01.txt"
TABLE = yaml.safe_load((ROOT / "tests" / "bad_inputs_audit.yaml").read_text())


def test_every_audit_case_is_mapped():
    ids = set(re.findall(r"^### (\S+) \|", AUDIT.read_text(), re.M))
    assert len(ids) >= 200  # 214 cases, 210 distinct ids
    assert sorted(ids - set(TABLE)) == []
    assert sorted(set(TABLE) - ids) == []  # no stale rows


def test_every_mapped_test_exists():
    files = sorted({target.split("::")[0] for target in TABLE.values()})
    proc = procs.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                      "-p", "no:cacheprovider", *files], cwd=ROOT, capture_output=True,
                     text=True, timeout=300)
    nodes = {line.strip() for line in proc.stdout.splitlines() if "::" in line}
    assert nodes, proc.stdout[-2000:] + proc.stderr[-2000:]
    missing = {case: target for case, target in TABLE.items()
               if target not in nodes and not any(n.startswith(target + "[") for n in nodes)}
    assert missing == {}
