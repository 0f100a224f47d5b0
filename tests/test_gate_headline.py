"""The gate's first lines: verdict (a pass on waivers says so), image, digest, policy."""

from buildkit.gate import STATIC_DIFFERS, headline


def _result(verdict, statuses, digest=None):
    return {"verdict": verdict,
            "checks": [{"name": n, "status": s} for n, s in statuses.items()],
            "image": {"reference": "efakit-test/pytorch:ci", "id": "sha256:abc",
                      "policy": "images/policies/offline-gate.yaml", "digest": digest}}


def test_a_pass_on_waivers_says_so_first():
    head = headline(_result("pass", {"plugin": "pass", "efa_installer": "waived",
                                     "size": "waived"}))
    assert head[0] == "GATE: PASS with 2 waivers (efa_installer, size)"
    assert head[1] == ("image:  efakit-test/pytorch:ci  no registry digest (not pushed)  "
                       "(id sha256:abc)")
    assert head[2] == "policy: images/policies/offline-gate.yaml"
    assert head[3] == f"note:   {STATIC_DIFFERS}"


def test_a_plain_verdict_and_a_registry_digest():
    head = headline(_result("fail", {"plugin": "fail", "efa_installer": "waived"},
                            "repo/x@sha256:def"))
    assert head[0] == "GATE: FAIL"
    assert "repo/x@sha256:def" in head[1]
    assert headline(_result("pass", {"plugin": "pass"}))[0] == "GATE: PASS"
