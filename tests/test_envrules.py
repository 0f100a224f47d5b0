"""Every env rule: the seed set for old plugins, nothing needless for new ones, lint, forbids."""

import pytest

from verify import envrules
from verify.profiles import resolve

SEED = {"aws_ofi_nccl": "1.5.0", "libfabric": "1.18.1", "nccl": "2.14.3",
        "efa_installer": "1.25.0", "cuda": "11.8", "aws_ofi_nccl_source": "build"}
MODERN = {"aws_ofi_nccl": "1.14.2", "libfabric": "2.1.0", "nccl": "2.21.5",
          "efa_installer": "1.41.0", "cuda": "12.4", "aws_ofi_nccl_source": "installer"}
SEED_VARS = {"FI_PROVIDER": "efa", "NCCL_PROTO": "simple", "FI_EFA_USE_DEVICE_RDMA": "1",
             "NCCL_LAUNCH_MODE": "PARALLEL", "NCCL_NET_SHARED_COMMS": "0"}


def baked(versions):
    return {v: d.value for v, d in envrules.image_env(versions).items() if d.is_set}


def test_old_plugin_yields_the_seed_variables():
    assert baked(SEED) == SEED_VARS


def test_modern_plugin_sets_nothing_needless():
    assert baked(MODERN) == {}


def test_every_variable_has_a_reason_and_source():
    for decision in envrules.explain(MODERN, None):
        assert decision.why and decision.source


@pytest.mark.parametrize("versions,expected", [
    ({**MODERN, "aws_ofi_nccl": "1.6.0", "libfabric": "1.17"}, "1"),  # plugin < 1.7
    ({**MODERN, "aws_ofi_nccl": "1.8.0", "libfabric": "1.17"}, "1"),  # libfabric < 1.18
    ({**MODERN, "aws_ofi_nccl": "1.8.0", "libfabric": "1.18"}, None),  # both new: not needed
])
def test_device_rdma_by_version(versions, expected):
    assert envrules.decide("FI_EFA_USE_DEVICE_RDMA", versions).value == expected


def test_device_rdma_unset_at_start_where_no_rdma_read():
    changes = envrules.start_changes(SEED, resolve("g4dn.metal"))
    assert [(c.var, c.image_value, c.value) for c in changes] == \
        [("FI_EFA_USE_DEVICE_RDMA", "1", None)]
    assert envrules.start_changes(SEED, resolve("p4d")) == []
    assert envrules.start_changes(MODERN, resolve("g4dn.metal")) == []


def test_provider_rule_boundary():
    assert envrules.decide("FI_PROVIDER", {**MODERN, "aws_ofi_nccl": "1.5.0"}).value == "efa"
    assert envrules.decide("FI_PROVIDER", {**MODERN, "aws_ofi_nccl": "1.5.1"}).value is None


def test_missing_plugin_version_falls_to_the_default_rule():
    versions = {**MODERN, "aws_ofi_nccl": None}
    assert envrules.decide("NCCL_PROTO", versions).value is None


def test_lint_flags_simple_protocol_forced_with_a_modern_plugin_on_p5():
    findings = envrules.lint_env({"NCCL_PROTO": "simple"}, MODERN, [resolve("p5")])
    assert [f.var for f in findings] == ["NCCL_PROTO"]
    assert "costs bandwidth" in findings[0].message()


def test_lint_flags_device_rdma_where_rdma_read_is_absent():
    findings = envrules.lint_env({"FI_EFA_USE_DEVICE_RDMA": "1"}, MODERN,
                                 [resolve("g4dn.metal")])
    assert len(findings) == 1 and "no RDMA read" in findings[0].message()


def test_lint_flags_nccl_algo_with_nccl_212_or_newer():
    findings = envrules.lint_env({"NCCL_ALGO": "Ring"}, MODERN)
    assert [f.var for f in findings] == ["NCCL_ALGO"]
    assert "2.12" in findings[0].message()


def test_lint_accepts_the_rules_own_image_env():
    assert envrules.lint_env(baked(SEED), SEED) == []
    assert envrules.lint_env(baked(MODERN), MODERN) == []


def test_lint_reports_a_missing_seed_variable():
    env = dict(SEED_VARS)
    del env["FI_PROVIDER"]
    assert [f.var for f in envrules.lint_env(env, SEED)] == ["FI_PROVIDER"]


def test_forbidden_p5_minimums():
    problems = envrules.forbidden(SEED, ["sm_80", "sm_90"])
    assert any("aws_ofi_nccl 1.5.0 does not meet >=1.7.2" in p for p in problems)
    assert any("cuda 11.8 does not meet >=12.0" in p for p in problems)
    assert envrules.forbidden(SEED, ["sm_80"]) == []
    assert envrules.forbidden(MODERN, ["sm_80", "sm_90"]) == []


@pytest.mark.parametrize("source", ["archive", "release"])
def test_forbidden_source_build_needs_new_libfabric(source):
    versions = {**MODERN, "aws_ofi_nccl_source": source, "libfabric": "1.19"}
    assert any("libfabric 1.19" in p for p in envrules.forbidden(versions, ["sm_80"]))
    installer = {**versions, "aws_ofi_nccl_source": "installer"}
    assert not any("libfabric" in p for p in envrules.forbidden(installer, ["sm_80"]))


def test_lint_names_the_instances_a_finding_holds_for():
    """Across every profile, one wrong variable can be wrong for different reasons on
    different instances: each finding names its instances, not 'every instance'."""
    findings = envrules.lint_env({"FI_EFA_USE_DEVICE_RDMA": "1"}, MODERN)
    by_instances = {f.instances: f for f in findings}
    assert ("g4dn.metal",) in by_instances and len(findings) == 2
    assert "no RDMA read" in by_instances[("g4dn.metal",)].message()
    others = next(f for f in findings if f.instances != ("g4dn.metal",))
    assert "p5.48xlarge" in others.instances and "g4dn.metal" not in others.instances
    assert "every instance" not in " ".join(f.message() for f in findings)
