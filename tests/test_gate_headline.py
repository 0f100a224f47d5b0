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


def test_after_a_push_the_digest_is_the_pushed_one_everywhere():
    """Issue 27: the log said 'pushed ...@sha256:6b86... (pushed)' while the headline,
    gate.md and gate.json's image.digest said 'no registry digest (not pushed)'."""
    from buildkit.gate import with_push

    ref = "127.0.0.1:15000/efakit-pytorch:pytorch2.13-ec2-8a796ef60337"
    for action in ("pushed", "already-present"):
        result = with_push({**_result("pass", {"plugin": "pass"}),
                            "push": {"action": action, "reference": ref,
                                     "digest": "sha256:6b869b02"}})
        assert result["image"]["digest"] == f"{ref}@sha256:6b869b02"
        assert f"{ref}@sha256:6b869b02" in headline(result)[1]
        assert "not pushed" not in headline(result)[1]
    refused = with_push({**_result("fail", {"plugin": "fail"}),
                         "push": {"action": "refused",
                                  "reason": "gate verdict fail: nothing was pushed"}})
    assert refused["image"]["digest"] is None
    assert "not pushed: gate verdict fail: nothing was pushed" in headline(refused)[1]
