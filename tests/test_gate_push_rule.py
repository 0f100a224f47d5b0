"""The gate pushes only on PASS (issue #24): an inconclusive result, a failure, or a
verdict this code does not know keeps the image local.  Docker-free: the rule is one
function that `efakit gate` asks before any registry call (tests/test_gate.py runs the
whole command against a registry)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from buildkit.gate import push_refusal
from verify.report import VERDICT_EXIT


@settings(max_examples=50, deadline=None)
@given(verdict=st.one_of(st.sampled_from(sorted(VERDICT_EXIT)), st.text(max_size=12)))
def test_only_a_pass_is_pushed(verdict):
    refusal = push_refusal(verdict)
    assert (refusal is None) == (verdict == "pass")


def test_the_refusal_names_the_verdict_in_one_line():
    for verdict in ("fail", "inconclusive"):
        assert push_refusal(verdict) == f"gate verdict {verdict}: nothing was pushed"
