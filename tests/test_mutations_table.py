"""bench/mutations.yaml stays applicable: a row whose snippet moved with a refactor
would silently drop out of `make mutate`'s score (nine rows had, when the checks moved
to verify/checks.py and the bandwidth bar to verify/bandwidth.py)."""

from __future__ import annotations

import importlib.util
import sys

from tests.conftest import ROOT


def _mutate_module():
    spec = importlib.util.spec_from_file_location("bench_mutate", ROOT / "bench" / "mutate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_mutation_applies_to_exactly_one_place():
    mutations, first = _mutate_module().load([])
    assert len(mutations) >= 50 and first
