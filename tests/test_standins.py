"""Stand-in bases (tests/standins) built with Docker, probed by `make base-facts`' logic:
the comparison passes on each stand-in and fails, naming the fact, on a table with a
deliberately wrong one (issue 25)."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from buildkit import basefacts
from tests.conftest import CI_EC2, ROOT

pytestmark = pytest.mark.docker
STANDINS = ROOT / "tests" / "standins"
BASES = ("pytorch-runtime", "cuda-runtime")


def _docker() -> str:
    from buildkit.engine import find_engine
    from verify.cliutil import CliError

    try:
        client = find_engine().client  # a client that builds with BuildKit
    except CliError as exc:
        pytest.skip(f"no Docker engine to build with: {exc}")
    if subprocess.run([client, "image", "inspect", CI_EC2],
                                        capture_output=True).returncode != 0:
        pytest.skip(f"needs Docker and {CI_EC2} (make ci-image)")
    return client


@pytest.fixture(scope="module")
def standins():
    client = _docker()
    for base in BASES:
        row = basefacts.table()[base]
        subprocess.run([client, "build", "-q", "--build-arg", f"OFFLINE_IMAGE={CI_EC2}",
                        "-t", row.stand_in, "-f",
                        str(STANDINS / f"{base}.Dockerfile"), str(STANDINS)],
                       check=True, capture_output=True, timeout=600,
                       env={**os.environ, "DOCKER_BUILDKIT": "1"})
    return client


@pytest.mark.parametrize("base", BASES)
def test_standin_matches_its_facts(standins, base):
    assert basefacts.main(["check", "--stand-ins", "--base", base, "--docker", standins]) == 0


def test_a_wrong_fact_fails_with_the_difference(standins, tmp_path, capsys):
    raw = yaml.safe_load(basefacts.FACTS_FILE.read_text())
    raw["bases"]["cuda-runtime"]["facts"]["held_packages"]["value"] = []
    wrong = tmp_path / "facts.yaml"
    wrong.write_text(yaml.safe_dump(raw))
    code = basefacts.main(["check", "--stand-ins", "--base", "cuda-runtime", "--facts",
                           str(wrong), "--docker", standins])
    out = capsys.readouterr().out
    assert code == 1 and "held_packages: table says [], the image has ['libnccl2']" in out
