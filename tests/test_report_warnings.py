"""What a report shows must hold wherever it is shown: a cut input is flagged in the
table and the Markdown too, and JUnit XML stays well-formed whatever the log held."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET

from click.testing import CliRunner

from tests.conftest import CORPUS
from verify import cli as verify_cli

GOOD_LOG = CORPUS / "001-efa-gdr-p4d-nccl283-eks-nccltests.log"


def _parse(*argv: str):
    return CliRunner().invoke(verify_cli.main, ["parse", *argv])


def test_a_truncated_input_is_flagged_in_table_and_markdown(tmp_path):
    packed = gzip.compress(GOOD_LOG.read_bytes()[:20000])
    (tmp_path / "cut.log.gz").write_bytes(packed[:-30])
    md = tmp_path / "summary.md"
    result = _parse(str(tmp_path / "cut.log.gz"), "--markdown", str(md))
    assert "WARNING: " in result.stdout and "input ends early" in result.stdout
    assert "**Warning:**" in md.read_text() and "input ends early" in md.read_text()
    whole = _parse(str(GOOD_LOG))
    assert "WARNING: " not in whole.stdout


def test_junit_is_well_formed_with_ansi_escapes_and_nul_in_evidence(tmp_path):
    text = GOOD_LOG.read_text(errors="replace").replace(
        "NCCL INFO", "\x1b[31mNCCL INFO\x00\x1b[0m", 40)
    (tmp_path / "ansi.log").write_text(text)
    junit = tmp_path / "r.xml"
    result = _parse(str(tmp_path / "ansi.log"), "--junit", str(junit))
    assert result.exit_code in (0, 1, 3), result.stderr
    tree = ET.parse(junit)  # raises on an invalid character
    body = ET.tostring(tree.getroot(), encoding="unicode")
    assert "\x1b" not in body and "\x00" not in body


def test_junit_shows_control_characters_as_escapes():
    import json

    from verify.report import to_junit

    result = json.loads(_parse(str(GOOD_LOG), "--json", "--instance-type", "p4d").stdout)
    check = next(c for c in result["checks"] if c["evidence"])
    check["status"] = "fail"
    check["message"] = "bad\x07 bell"
    check["evidence"][0]["text"] = "\x1b[31mNCCL INFO\x00 red\x1b[0m"
    xml = to_junit(result)
    root = ET.fromstring(xml.encode())  # raises on an invalid character
    failure = root.find(".//failure")
    assert failure is not None and "\\x1b[31mNCCL INFO\\x00 red" in failure.text
    assert failure.get("message") == "bad\\x07 bell"
