"""Slurm node-list expansion: Slurm's own answers, bounded before any work is done."""

from __future__ import annotations

import os
import stat
import time

import pytest

from verify.run.nodelist import expand_nodelist


@pytest.mark.parametrize("text,names", [
    ("p5-001", ["p5-001"]),
    ("p5-[001-003,007]", ["p5-001", "p5-002", "p5-003", "p5-007"]),
    ("rack[1-2]-node[01-02]", ["rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),
    ("n[08-11]", ["n08", "n09", "n10", "n11"]),
    ("a[1-2],login,b[3]", ["a1", "a2", "login", "b3"]),
    ("gpu[1-2]x", ["gpu1x", "gpu2x"]),
    (" n[1-2] ", ["n1", "n2"]),
])
def test_expands_as_slurm_does(text, names):
    assert expand_nodelist(text, 100, use_scontrol=False) == names


@pytest.mark.parametrize("text,error", [
    ("p5-[001-", "unclosed"),
    ("p5-]1[", "unbalanced"),
    ("p5-[a-c]", "not N or N-M"),
    ("n[3-1]", "backwards"),
    ("n[[1-2]]", "nested"),
    ("", "empty node list"),
    ("a,,b", "empty name"),
    ("n[1-]", "not N or N-M"),
    ("n[]", "not N or N-M"),
])
def test_malformed_lists_are_one_line_errors(text, error):
    with pytest.raises(ValueError, match=error) as info:
        expand_nodelist(text, 100, use_scontrol=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["n[0-99999999]", "a[0-999]-b[0-999]-c[0-999]",
                                  "n[0-5],m[0-5]"])
def test_huge_lists_are_refused_before_any_name_is_made(text):
    start = time.monotonic()
    with pytest.raises(ValueError, match="more than 10 hosts"):
        expand_nodelist(text, 10, use_scontrol=False)
    assert time.monotonic() - start < 0.5


def test_scontrol_is_the_reference_where_present(tmp_path, monkeypatch):
    """A stand-in scontrol (a real executable on PATH) answers; ours only validates."""
    fake = tmp_path / "scontrol"
    fake.write_text("#!/bin/sh\n[ \"$1 $2\" = 'show hostnames' ] || exit 1\n"
                    "printf 'from-scontrol-1\\nfrom-scontrol-2\\n'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert expand_nodelist("n[1-2]", 10) == ["from-scontrol-1", "from-scontrol-2"]
    with pytest.raises(ValueError, match="more than 10"):
        expand_nodelist("n[0-99999999]", 10)  # bounded before scontrol is asked
