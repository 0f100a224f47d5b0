"""Exit status by the README's table: a base image the engine cannot pull is a missing
part (4), not a verification that failed (1) (issue 27, newcomer defect D10)."""

from __future__ import annotations

import dataclasses

import pytest

from buildkit.build import _ensure_base
from buildkit.engine import find_engine
from buildkit.spec import load_spec
from tests.conftest import ROOT
from verify.cliutil import CliError
from verify.exitcodes import Exit


@pytest.mark.docker
def test_a_base_image_that_cannot_be_pulled_exits_4():
    spec = load_spec(ROOT / "images" / "pytorch.yaml")
    nowhere = dataclasses.replace(spec, base={**spec.base,
                                              "image": "127.0.0.1:9/efakit-test/none:1"})
    with pytest.raises(CliError) as raised:
        _ensure_base(find_engine(), nowhere)
    assert raised.value.code == Exit.NO_ENGINE
    assert "cannot pull base image 127.0.0.1:9/efakit-test/none:1" in str(raised.value)
