"""An #SBATCH line carries one value as one sbatch word (issue #24 class 1): sbatch
splits a directive at whitespace and reads quotes and '#', so a value that would be
split, quoted or read as an option is refused, whatever validated it before."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verify.boundary.emit import sbatch_directive
from verify.boundary.values import BadValue

TEXT = st.text(alphabet=st.sampled_from(list("ap5-1[],:% \t\n'\"#$`\\=/@.")), max_size=16)


@settings(max_examples=150, deadline=None)
@given(value=TEXT)
def test_a_value_is_one_sbatch_word_or_refused(value):
    try:
        line = sbatch_directive("exclude", value)
    except BadValue as exc:
        assert "\n" not in str(exc)
        return
    assert line.split() == ["#SBATCH", f"--exclude={value}"] and "\n" not in line
    assert not value.startswith("-") and not set(value) & set("'\"#$`\\ \t")


@pytest.mark.parametrize("value", ["p5-1 --export=ALL,LD_PRELOAD=/fsx/x.so", "a\ntouch /x",
                                   "-V", "a#b", "'p5-1'", ""])
def test_incident_values_are_refused(value):
    with pytest.raises(BadValue):
        sbatch_directive("exclude", value)


def test_a_slurm_host_list_passes_as_it_is():
    assert sbatch_directive("nodelist", "p5-[001-004],p5-9") == "#SBATCH --nodelist=p5-[001-004],p5-9"
