"""Agreement with every expert label in the corpus of real NCCL logs (tests/corpus).

Compared as the parser issue defines it: efa_used, gdr_used, transport (label
network efa -> libfabric, unknown -> null), provider (first ';' component),
busbw avg within 1%, at least one error-severity entry where the label says
errors (and none where it says there are none).
"""

import json

import jsonschema
import pytest

from tests.conftest import CORPUS, ROOT
from tests.parsehelp import parse_paths

NETWORK = {"efa": "libfabric", "ib": "ib", "socket": "socket", "unknown": None}
# In the repository, so a missing corpus is an error, never a skip.
LABELS = json.loads((CORPUS / "LABELS.json").read_text())
SCHEMA = json.loads((ROOT / "verify" / "schema" / "result.schema.json").read_text())


def test_every_log_has_a_label_with_its_source():
    logs = {path.name for path in CORPUS.glob("*.log")}
    assert logs == {label["file"] for label in LABELS}
    assert all(label["source"].strip() for label in LABELS)


def _first(provider):
    return provider.split(";")[0] if provider else None


@pytest.mark.parametrize("label", LABELS, ids=[lab["file"][:3] for lab in LABELS])
def test_agrees_with_label(label):
    result = parse_paths([CORPUS / label["file"]])
    assert result["efa_used"] == label["efa_used"], result["findings"]["efa_used"]
    assert result["gdr_used"] == label["gdr_used"], result["findings"]["gdr_used"]
    assert result["transport"] == NETWORK[label["network"]], result["findings"]["transport"]
    assert _first(result["provider"]) == _first(label["provider"])
    if label["busbw_avg_GBps"] is None:
        assert result["busbw_avg_GBps"] is None
    else:
        assert result["busbw_avg_GBps"] == pytest.approx(label["busbw_avg_GBps"], rel=0.01)
    errors = [e for e in result["errors"] if e["severity"] == "error"]
    assert bool(errors) == label["errors"], errors[:3]


def test_every_corpus_result_matches_the_json_schema():
    for label in LABELS:
        jsonschema.validate(parse_paths([CORPUS / label["file"]]), SCHEMA)


def test_every_verdict_names_its_evidence():
    for label in LABELS:
        result = parse_paths([CORPUS / label["file"]])
        for name in ("efa_used", "gdr_used"):
            finding = result["findings"][name]
            if finding["value"] is not None:
                assert finding["evidence"], (label["file"], name)
                for ev in finding["evidence"]:
                    assert ev["file"].endswith(label["file"]) and ev["line"] >= 1


def test_whole_corpus_as_one_directory_fails_on_the_worst_rank():
    result = parse_paths([CORPUS])
    assert result["verdict"] == "fail"
    assert result["transport"] == "socket"  # the worst transport any input used
    assert result["efa_used"] is False
