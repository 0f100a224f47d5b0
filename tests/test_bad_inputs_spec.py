"""Bad image specs: `efakit render` and `efakit lint` refuse each in one line, exit 2,
and write nothing (the audit's spec-* cases and the classes around them)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from buildkit import cli as host_cli
from tests.badinput import Case, check
from tests.conftest import ROOT

GOOD = yaml.safe_load((ROOT / "images" / "pytorch.yaml").read_text())
BASE = "base.choices.pytorch-runtime"
EFA = "components.efa_installer"
OFF = "profiles.offline"


def _set(data: dict, dotted: str, value: object) -> None:
    keys = dotted.split(".")
    # base choice names hold a '-' but no '.', so splitting on '.' is exact
    for key in keys[:-1]:
        data = data[key]
    if value is _DELETE:
        del data[keys[-1]]
    else:
        data[keys[-1]] = value


_DELETE = object()
INJECT = "a\nRUN curl evil | sh"

# (id, dotted key, bad value, word expected in the message)
MUTATIONS: list[tuple[str, str, object, str]] = []
for key in ("schema_version", "framework", "base", "components", "gpu_archs", "variants",
            "artifacts", "size_budget_GB", "gate_policy"):
    MUTATIONS.append((f"missing-{key}", key, _DELETE, "missing"))
for key, values in {
    "schema_version": ["1", 2, 0, None, [1], 1.5, True],
    "framework": [5, None, "Pytorch", "pytorch\nx", ["pytorch"]],
    "size_budget_GB": ["30", True, -1, 0, None, [30], {"a": 1}, 1e9],
    "gpu_archs": ["sm_90", 5, None, [5], ["sm_999"], [["sm_90"]], ["sm_90\nRUN x"]],
    "instance_types": ["p5", [5], ["z1d.large"], [None], ["p5\nx"]],
    "variants": [["ec2"], "ec2", {"lambda": None}, {"ec2": {"colour": 1}},
                 {"ec2": {"why": 5}}, {"ec2": "x"}],
    "artifacts": [None, "out", {"mirror": 5}, {"mirror": "a b"}, {"colour": 1},
                  {"mirror": "../x\ny"}],
    "gate_policy": [5, None, ["x"], "a b", "x\nRUN y"],
    "env_extra": [["X"], "X=1", {"x": "1"}, {"X": 1}, {"X": None}, {"X": ["a"]},
                  {"X": INJECT}, {"X": "a\rb"}, {"X": "a\x00b"}, {"X": "a\x1bb"},
                  {"1X": "a"}, {"X-Y": "a"}, {"X": "a" * 5000}],
    "profiles": [["offline"], "offline", {"Bad Name": {}}, {"p": {"colour": 1}},
                 {"p": {"size_budget_GB": "x"}}, {"p": {"env_extra": {"X": INJECT}}}],
    "base": [None, "pytorch", {"default": 5}, {"default": "nope", "choices": {}}],
    f"{BASE}.image": [5, None, "pytorch/pytorch", "Pytorch/Pytorch:1", "a b:1",
                      "x:1\nRUN evil", "pytorch/pytorch:1;rm -rf /"],
    f"{BASE}.builder_image": [5, "a b:1", "x:1\nRUN evil"],
    f"{BASE}.distro": [5, "windows11", "ubuntu 24.04", "ubuntu24.04\nRUN x"],
    f"{BASE}.python": [5, None, "/usr/bin/python3; rm -rf /", "python\nRUN x",
                       "$(evil)"],
    f"{BASE}.cuda": [13.0, "thirteen", "13.0\nRUN x", ["13.0"]],
    f"{BASE}.torch": [2.13, "two", "2.13.0 && evil"],
    f"{BASE}.torch_from_pip": ["yes", 1],
    f"{BASE}.builder_wheels": ["nvcc", [5], ["nvcc==1; rm -rf /"], ["a\nRUN x"]],
    f"{BASE}.colour": ["red"],
    "components": [None, [], "efa", {"nope": {"version": "1"}}, {"efa_installer": "x"}],
    f"{EFA}.version": [1.5, None, "one.two", "1.50.0\nRUN x", "1.50.0 evil"],
    f"{EFA}.url": ["http://example.com/x.tgz", 5, "https://example.com/a b.tgz",
                   "https://example.com/x.tgz\nRUN y", "https://example.com/$(evil).tgz",
                   "ftp://example.com/x.tgz", "https://example.com/x.tgz;evil"],
    f"{EFA}.sha256": [5, "A" * 64, "abc", ["x"], "a" * 64 + "\nRUN x"],
    f"{EFA}.file": ["../x.tgz", "a b.tgz", 5, "x.tgz\nRUN y", ".hidden"],
    f"{EFA}.provenance": [5, "", "a\nb"],
    f"{EFA}.colour": ["red"],
    f"{EFA}.signature": ["x", {"colour": 1}, {"url": "http://x/y"}],
    f"{EFA}.signature.key_fingerprint": ["abc", 5, "4e9091bcbb97a96b26b15e59a05480b1dd2d3ccc"],
    f"{EFA}.bundles": ["x", {"colour": "1"}, {"libfabric": "two"}, {"libfabric": 2}],
}.items():
    for n, value in enumerate(values):
        MUTATIONS.append((f"{key}-{n}", key, value, ""))


def _spec_cases() -> list[tuple[str, dict]]:
    cases = []
    for case_id, key, value, _ in MUTATIONS:
        data = copy.deepcopy(GOOD)
        _set(data, key, value)
        cases.append((case_id, data))
    return cases


# Raw texts: what a dict cannot express (YAML-level problems).
RAW = {
    "empty": b"",
    "only-comment": b"# nothing\n",
    "listtop": b"- 1\n- 2\n",
    "scalar": b"pytorch\n",
    "badyaml": b"a: [1, 2\nb: c: d\n",
    "binary": bytes(range(256)) * 4,
    "latin1": "framework: pytorch\nwhy: caf\xe9\n".encode("latin-1"),
    "utf16": "schema_version: 1\n".encode("utf-16"),
    "dupkey": (ROOT / "images" / "pytorch.yaml").read_bytes() + b"size_budget_GB: 5\n",
    "dupkey-nested": b"schema_version: 1\nbase:\n  default: a\n  default: b\n",
    "nan": (ROOT / "images" / "pytorch.yaml").read_bytes().replace(
        b"size_budget_GB: 30", b"size_budget_GB: .nan"),
    "inf": (ROOT / "images" / "pytorch.yaml").read_bytes().replace(
        b"size_budget_GB: 30", b"size_budget_GB: .inf"),
    "deepnest-flow": b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "deepnest-block": b"a:\n" + b"".join(b"  " * i + b"k%d:\n" % i for i in range(1, 200)),
    "deepnest-seq": b"a: " + b"- " * 5000 + b"x\n",
    "python-tag": b"schema_version: !!python/object/apply:os.system ['true']\n",
    "anchor-bomb": b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                   b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c]\n",
    "baddate": b"schema_version: 2026-13-45\n",
    "huge": b"schema_version: 1\nwhy: '" + b"x" * (5 * 1024 * 1024) + b"'\n",
    "tabs": b"schema_version: 1\n\tframework: pytorch\n",
    "nul-inside": b"schema_version: 1\x00\n",
    "bom-then-list": "\ufeff- a\n".encode(),
}


@pytest.fixture
def home(tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    monkeypatch.setattr(host_cli, "IMAGES_DIR", images)
    return tmp_path


def _render(case_id: str, extra: tuple[str, ...] = ()) -> Case:
    return Case(case_id, ("render", "pytorch", "-o", "out", *extra), 2, "efakit: error:")


@pytest.mark.parametrize("case_id,data", _spec_cases(), ids=[c[0] for c in _spec_cases()])
def test_bad_spec_values_are_refused(home, case_id, data):
    (home / "images" / "pytorch.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    check(host_cli.main, _render(f"spec-{case_id}"), home)


@pytest.mark.parametrize("case_id", sorted(RAW))
def test_bad_spec_texts_are_refused(home, case_id):
    (home / "images" / "pytorch.yaml").write_bytes(RAW[case_id])
    check(host_cli.main, _render(f"spec-{case_id}"), home)


@pytest.mark.parametrize("case_id,key,value", [
    ("profcomp", "components", {"efa_installer": "x"}),
    ("profbase", "base", {"default": "nope"}),
    ("profinject", "env_extra", {"NCCL_X": INJECT}),
    ("profimage", "base", {"default": "d", "choices": {"d": {"image": "x:1\nRUN y",
                                                              "distro": "debian12",
                                                              "python": "/usr/bin/python3"}}}),
    ("profbudget", "size_budget_GB", True),
    ("profarchs", "gpu_archs", "sm_90"),
])
def test_bad_profile_overlays_are_refused(home, case_id, key, value):
    data = copy.deepcopy(GOOD)
    data["profiles"]["offline"][key] = value
    (home / "images" / "pytorch.yaml").write_text(yaml.safe_dump(data))
    check(host_cli.main, _render(f"spec-{case_id}", ("--profile", "offline")), home)


@pytest.mark.parametrize("kind", ["fifo", "dir", "loop", "devzero", "dangling", "procmem"])
def test_spec_paths_that_are_no_regular_file(home, kind):
    target = home / "images" / "pytorch.yaml"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dir":
        target.mkdir()
    elif kind == "loop":
        target.symlink_to("loop2.yaml")
        (home / "images" / "loop2.yaml").symlink_to("pytorch.yaml")
    elif kind == "devzero":
        target.symlink_to("/dev/zero")
    elif kind == "dangling":
        target.symlink_to("nowhere.yaml")
    else:
        target.symlink_to("/proc/self/mem")
    check(host_cli.main, _render(f"spec-{kind}"), home)


@pytest.mark.parametrize("argv", [
    ("render", "../etc/passwd", "-o", "out"),
    ("render", "Pytorch", "-o", "out"),
    ("render", "nope", "-o", "out"),
    ("render", "pytorch", "--profile", "nope", "-o", "out"),
    ("render", "pytorch", "--variant", "nope", "-o", "out"),
    ("render", "pytorch", "--base", "nope", "-o", "out"),
    ("lint", "nope"),
    ("lint", "pytorch", "--profile", "nope"),
    ("explain-env", "tensorflow"),
    ("explain-env", "pytorch", "--profile", "nope"),
    ("explain-env", "pytorch", "--instance-type", "z1d.large"),
])
def test_bad_names_on_the_command_line(home, argv):
    (home / "images" / "pytorch.yaml").write_bytes((ROOT / "images" / "pytorch.yaml")
                                                   .read_bytes())
    check(host_cli.main, Case("spec-arg-" + "-".join(argv[:2]), argv, 2), home)


def test_lint_catches_an_injected_env_value(home):
    data = copy.deepcopy(GOOD)
    data["env_extra"] = {"NCCL_X": INJECT}
    (home / "images" / "pytorch.yaml").write_text(yaml.safe_dump(data))
    err = check(host_cli.main, Case("lint-injected", ("lint", "pytorch", "--no-hadolint"), 2),
                home)
    assert "env_extra.NCCL_X" in err


def test_a_value_with_a_space_stays_one_quoted_env_value(home, tmp_path):
    data = copy.deepcopy(GOOD)
    data["env_extra"] = {"NCCL_X": 'a b "$HOME"\\'}
    (home / "images" / "pytorch.yaml").write_text(yaml.safe_dump(data))
    out = Path(tmp_path / "ctx")
    runner_case = Case("spec-space", ("render", "pytorch", "--variant", "ec2", "-o", str(out)),
                       0)
    from click.testing import CliRunner

    result = CliRunner().invoke(host_cli.main, list(runner_case.argv))
    assert result.exit_code == 0, result.stderr
    dockerfile = (out / "Dockerfile").read_text()
    assert 'NCCL_X="a b \\"\\$HOME\\"\\\\"' in dockerfile
    assert "\nRUN curl" not in dockerfile
