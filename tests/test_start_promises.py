"""The start-time env step never changes a variable the user set, on any instance family
(README: "a variable the user set is never touched").  Properties over every instance
profile, exact or ambiguous detection, and any mix of user-set variables and values
(the image's own value included), for the record a current image writes and for the
record of an older image that baked the start defaults into ENV."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildkit.render import render_context
from buildkit.spec import load_spec
from tests.conftest import FIXTURES
from verify import startenv
from verify.detect import Detection
from verify.envrules import start_changes
from verify.profiles import all_profiles

PROFILES = sorted(all_profiles().values(), key=lambda p: p.name)
VALUES = st.sampled_from(["0", "1", "", "efa", "a b", "$HOME"])


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict:
    ctx = render_context(load_spec(FIXTURES / "specs" / "seed" / "pytorch.yaml"), "ec2",
                         tmp_path_factory.mktemp("start") / "ctx")
    return startenv.load_image_env(ctx / "efakit" / "image-env.json")


def _ruled(record: dict) -> list[str]:
    """Every variable the step could touch: defaults, baked ENV, any instance's change."""
    changed = {c.var for p in PROFILES for c in start_changes(record["versions"], p)}
    return sorted(changed | set(record.get("start_defaults") or {}) | set(record["env"]))


def _touched(plan: startenv.StartPlan) -> set[str]:
    return {line.split()[1].split("=", 1)[0] for line in startenv.shell_lines(plan)}


def _environ(draw, record: dict, baked: dict) -> dict:
    names = draw(st.lists(st.sampled_from(_ruled(record)), unique=True, max_size=6))
    return {n: draw(st.one_of(VALUES, st.just(baked.get(n) or "1"))) for n in names}


def _detection(draw) -> Detection:
    if draw(st.booleans()):
        return Detection(draw(st.sampled_from(PROFILES)), "test", "exact")
    candidates = draw(st.lists(st.sampled_from(PROFILES), min_size=2, max_size=3,
                               unique_by=lambda p: p.name))
    return Detection(None, "test", "gpu model", tuple(candidates))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_variable_present_at_start_is_never_changed(record, data):
    baked = {**record["env"], **(record.get("start_defaults") or {})}
    environ = _environ(data.draw, record, baked)
    plan = startenv.plan(record, _detection(data.draw), environ)
    assert not _touched(plan) & set(environ)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_on_an_older_image_a_value_unlike_the_images_is_the_users(record, data):
    """Older images baked the start defaults into ENV: a value present at start may be
    the image's own, but one that differs from it can only be the user's."""
    old = {**record, "env": {**record["env"], **(record.get("start_defaults") or {})},
           "start_defaults": {}}
    environ = _environ(data.draw, record, old["env"])
    plan = startenv.plan(old, _detection(data.draw), environ)
    for var in _touched(plan) & set(environ):
        assert environ[var] == old["env"].get(var), var


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_an_ambiguous_instance_gets_only_the_changes_every_candidate_needs(record, data):
    detection = _detection(data.draw)
    plan = startenv.plan(record, detection, {})
    for profile in detection.candidates or (detection.profile,):
        assert set(plan.changes) <= set(start_changes(record["versions"], profile))


def test_g4dn_and_p4d_together_leave_device_rdma_as_the_image_has_it(record):
    """Hand-picked: g4dn (no RDMA read) unsets FI_EFA_USE_DEVICE_RDMA, p4d keeps it."""
    by_name = {p.name: p for p in PROFILES}
    detection = Detection(None, "test", "gpu model", (by_name["g4dn.metal"], by_name["p4d.24xlarge"]))
    assert "FI_EFA_USE_DEVICE_RDMA" not in {c.var for c in startenv.plan(record, detection, {}).changes}


@pytest.mark.parametrize("value", ["0", "", "efa"])
def test_on_an_older_image_a_users_device_rdma_survives_g4dn(record, value):
    """Hand-picked: the image baked FI_EFA_USE_DEVICE_RDMA=1 into ENV; g4dn's rules unset
    it, but a different value at start is the user's and stays."""
    old = {**record, "env": {**record["env"], **(record.get("start_defaults") or {})},
           "start_defaults": {}}
    g4dn = next(p for p in PROFILES if p.name == "g4dn.metal")
    plan = startenv.plan(old, Detection(g4dn, "test", "exact"), {"FI_EFA_USE_DEVICE_RDMA": value})
    assert startenv.shell_lines(plan) == [] and [c.var for c in plan.kept] == \
        ["FI_EFA_USE_DEVICE_RDMA"]
