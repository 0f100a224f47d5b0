"""Checks are one concept: one registry of names, used by every producer and by policies."""

import ast
import json

import pytest

from tests.conftest import ROOT
from verify.checks import Check, registry, unknown_names
from verify.policy import load_policy

PRODUCERS = ("verify/static.py", "verify/preflight.py", "verify/run/counters.py",
             "verify/run/job.py", "verify/logparse/result.py", "buildkit/gate.py")


def _literal_check_names(path):
    """Every string literal passed as the first argument of Check(...) in a module."""
    tree = ast.parse((ROOT / path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Check" \
                and node.args and isinstance(node.args[0], ast.Constant):
            yield node.args[0].value


@pytest.mark.parametrize("path", PRODUCERS)
def test_every_producer_names_registered_checks(path):
    names = list(_literal_check_names(path))
    assert names, f"{path} makes no check: the list of producers is stale"
    assert unknown_names(names) == []


def test_no_producer_imports_checks_from_the_parser():
    for path in PRODUCERS + ("buildkit/cli.py", "verify/cli.py"):
        text = (ROOT / path).read_text()
        assert "logparse.decide import Check" not in text
        assert "logparse.model import Evidence" not in text
        assert "logparse.result import checks_result" not in text


def test_a_check_with_an_unregistered_name_cannot_be_made():
    with pytest.raises(ValueError, match="not in verify/data/checks.yaml"):
        Check("bandwith", "pass", True, "typo")
    with pytest.raises(ValueError, match="status 'ok'"):
        Check("bandwidth", "ok", True, "bad status")


def test_registry_rows_say_who_produces_them_and_why():
    for name, row in registry().items():
        assert set(row["producers"]) <= {"parse", "run", "static", "preflight", "gate"}, name
        assert row["meaning"].strip(), name


def test_gate_policy_names_are_registered():
    for path in (ROOT / "images" / "policies").glob("*.yaml"):
        load_policy(path)  # raises on an unknown name


def test_gate_refuses_an_image_reporting_checks_it_does_not_know():
    from types import SimpleNamespace

    from buildkit.gate import static_in_image

    class Recorded:
        """What `docker run IMAGE efa-verify static --json` printed, replayed."""

        def run(self, *args, **kwargs):
            body = {"checks": [{"name": "plugin", "status": "pass", "required": True,
                                "message": "ok", "evidence": []},
                               {"name": "quantum_link", "status": "pass", "required": True,
                                "message": "new", "evidence": []}]}
            return SimpleNamespace(stdout=json.dumps(body), stderr="", returncode=0)

    checks, _ = static_in_image(Recorded(), "efakit-test/none:x")
    assert [(c.name, c.status) for c in checks] == [("static", "fail")]
    assert "quantum_link" in checks[0].message
