"""Version parsing, constraints, and --instance-type resolution."""

import pytest

from verify.profiles import UnknownInstance, all_profiles, candidates_for_gpu, resolve
from verify.versions import VersionError, major_minor, parse_version, satisfies


@pytest.mark.parametrize("text,expected", [
    ("1.5.0aws", (1, 5, 0)), ("1.13.2-aws", (1, 13, 2)), ("v1.7.3-aws", (1, 7, 3)),
    ("2.27.3+cuda12.9", (2, 27, 3)), ("2.1.0amzn4.0", (2, 1, 0)), ("1.22", (1, 22)),
])
def test_parse_version_forms_in_the_wild(text, expected):
    assert parse_version(text) == expected


def test_parse_version_rejects_non_versions():
    with pytest.raises(VersionError):
        parse_version("latest")


@pytest.mark.parametrize("version,constraint,ok", [
    ("1.5.0", "<=1.5.0", True), ("1.5", "<=1.5.0", True), ("1.6.0", "<=1.5.0", False),
    ("1.18", ">=1.18,<2", True), ("2.0", ">=1.18,<2", False), ("2.12", "<2.12", False),
    ("1.7.2", ">=1.7.2", True), ("1.7.1", ">=1.7.2", False), ("1.14.2", "!=1.14.2", False),
])
def test_constraints(version, constraint, ok):
    assert satisfies(version, constraint) is ok


def test_bad_constraint_is_an_error():
    with pytest.raises(VersionError):
        satisfies("1.0", "~1.0")


def test_major_minor():
    assert major_minor("2.27.3+cuda12.9") == "2.27"
    assert major_minor("12") == "12.0"


@pytest.mark.parametrize("name", ["p5", "p5.48xlarge", "ml.p5.48xlarge", "ML.P5.48XLARGE", " p5 "])
def test_every_spelling_resolves_to_one_profile(name):
    assert resolve(name).name == "p5.48xlarge"


def test_required_profiles_exist_with_their_facts():
    profiles = all_profiles()
    for name in ("p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge", "p5e.48xlarge",
                 "p5en.48xlarge", "p6-b200.48xlarge"):
        prof = profiles[name]
        assert prof.gpu_count == 8 and prof.efa_devices > 0 and prof.gdr_capable
        assert prof.sagemaker_name == f"ml.{name}" and prof.source
    assert profiles["p5en.48xlarge"].efa_devices == 16
    assert profiles["p5.48xlarge"].arch == "sm_90"
    assert profiles["p6-b200.48xlarge"].arch == "sm_100"


def test_unknown_instance_names_the_known_ones():
    with pytest.raises(UnknownInstance, match="unknown instance type 'p9'.*p5.48xlarge"):
        resolve("p9")


def test_every_efa_instance_states_its_efa_bandwidth():
    for profile in all_profiles().values():
        assert (profile.efa_gbps > 0) == (profile.efa_devices > 0), profile.name
        assert "Gbps" in profile.source or not profile.efa_gbps, profile.name


def test_gpu_model_candidates():
    assert [p.name for p in candidates_for_gpu("NVIDIA H100 80GB HBM3")] == ["p5.48xlarge"]
    assert {p.name for p in candidates_for_gpu("NVIDIA H200")} == {"p5e.48xlarge", "p5en.48xlarge"}
    assert candidates_for_gpu("NVIDIA GeForce RTX 4090") == []
