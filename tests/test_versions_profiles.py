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


def test_every_efa_instance_states_its_efa_bandwidth_or_why_it_is_unknown():
    for profile in all_profiles().values():
        unknown = dict(profile.unknown)
        if profile.efa_gbps is None or profile.efa_devices is None:
            assert all(unknown.get(k) for k in ("efa_gbps", "efa_devices")
                       if getattr(profile, k) is None), profile.name
            continue
        assert (profile.efa_gbps > 0) == (profile.efa_devices > 0), profile.name
        assert "Gbps" in profile.source or not profile.efa_gbps, profile.name


def test_newer_instances_are_known_with_their_facts_or_unknowns():
    """Issue 27: p5en, p6-b300 and p6e-gb200, with what a source gives and 'unknown' with
    the reason otherwise; B300 (compute capability 10.3) runs the image's sm_100 code."""
    profiles = all_profiles()
    assert profiles["p5en.48xlarge"].efa_devices == 16
    b300 = profiles["p6-b300.48xlarge"]
    assert (b300.efa_devices, b300.efa_gbps, b300.arch) == (16, None, "sm_100")
    assert "efa_gbps" in dict(b300.unknown)
    gb200 = profiles["p6e-gb200.36xlarge"]
    assert gb200.efa_devices is None and set(dict(gb200.unknown)) == {"efa_devices", "efa_gbps"}
    assert [p.name for p in candidates_for_gpu("NVIDIA B300 SXM6 AC")] == ["p6-b300.48xlarge"]


def test_a_null_fact_without_a_reason_is_refused(tmp_path, monkeypatch):
    from verify import profiles as module

    row = {"gpu": {"model": "X", "count": 8, "memory_GiB": 1, "arch": "sm_90",
                   "link_GBps": 1}, "efa_devices": None, "rdma_read": None,
           "gdr_capable": False, "efa_gbps": 0,
           "gdr_both_directions": {"expected": None, "reason": "r", "source": "s"}}
    with pytest.raises(module.TableError, match="efa_devices is null without a reason"):
        module._build("x.large", row)
    row["unknown"] = {"efa_devices": "no source"}
    assert module._build("x.large", row).efa_devices is None


def test_gpu_model_candidates():
    assert [p.name for p in candidates_for_gpu("NVIDIA H100 80GB HBM3")] == ["p5.48xlarge"]
    assert {p.name for p in candidates_for_gpu("NVIDIA H200")} == {"p5e.48xlarge", "p5en.48xlarge"}
    assert candidates_for_gpu("NVIDIA GeForce RTX 4090") == []


def test_a_command_that_needs_an_unknown_fact_says_so_in_one_line(tmp_path):
    """launch needs the EFA count to request the devices; p6e-gb200's is unknown."""
    from tests import procs
    from tests.procs import EFAKIT

    image = "1.dkr.ecr.us-east-1.amazonaws.com/r@sha256:" + "a" * 64
    done = procs.run([*EFAKIT, "launch", "eks", "--instance-type", "p6e-gb200", "--nodes", "2",
                      "--image", image, "-o", str(tmp_path / "job.yaml")],
                     capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "EFA device count is unknown" in done.stderr
    assert not (tmp_path / "job.yaml").exists()
