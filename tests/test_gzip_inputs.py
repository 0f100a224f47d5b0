"""Compressed logs: a cut .gz keeps everything decoded before the cut, and a gzip bomb
stops early with a warning instead of costing minutes."""

from __future__ import annotations

import gzip
import os
import time

import pytest
from click.testing import CliRunner

from tests.conftest import CORPUS
from verify import cli as verify_cli
from verify.logparse import sources

GOOD_LOG = CORPUS / "001-efa-gdr-p4d-nccl283-eks-nccltests.log"


def _decoded(path, problems):
    return b"".join(sources.chunks(sources.Source(str(path), path), problems=problems))


def test_a_cut_gz_keeps_what_was_decoded(tmp_path):
    text = GOOD_LOG.read_bytes()[:20000]
    packed = gzip.compress(text)
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(packed[: len(packed) * 2 // 3])
    problems: list[str] = []
    data = _decoded(cut, problems)
    assert len(data) > len(text) // 3 and text.startswith(data)
    assert problems and "input ends early" in problems[0]


def test_concatenated_members_and_padding_are_read_whole(tmp_path):
    path = tmp_path / "two.log.gz"
    path.write_bytes(gzip.compress(b"a\n") + b"\x00" * 10 + gzip.compress(b"b\n"))
    problems: list[str] = []
    assert _decoded(path, problems) == b"a\nb\n" and problems == []


def test_a_gzip_bomb_is_refused_early_in_one_line(tmp_path, monkeypatch):
    """attack-1 H-5: 300 MB of zeros in 291 KB took minutes; the decoded size is capped
    at MAX_RATIO times the compressed size once past BOMB_MIN_BYTES."""
    monkeypatch.setattr(sources, "BOMB_MIN_BYTES", 4 << 20)
    bomb = tmp_path / "zeros.log.gz"
    bomb.write_bytes(gzip.compress(b"\x00" * (64 << 20), compresslevel=9))
    start = time.monotonic()
    result = CliRunner().invoke(verify_cli.main, ["parse", str(bomb)])
    assert time.monotonic() - start < 30
    assert result.exit_code == 2 and "gzip bomb" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""


@pytest.mark.parametrize("data,word", [(b"not gzip", "corrupt .gz"),
                                       (b"\x1f\x8b\x08\x00garbage-garbage", "corrupt .gz")])
def test_a_corrupt_gz_says_so(tmp_path, data, word):
    """attack-1 SA-10: 'not gzip' named .gz said 'no NCCL lines found'."""
    path = tmp_path / "c.log.gz"
    path.write_bytes(data)
    result = CliRunner().invoke(verify_cli.main, ["parse", str(path), "--instance-type", "p5"])
    assert result.exit_code in (2, 3) and word in result.output, result.output


def test_closed_stdin_is_one_line():
    """attack-1 TB-4: `efa-verify parse - <&-` was a traceback."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "verify", "parse", "-", "--instance-type",
                           "p5"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, check=False, preexec_fn=lambda: os.close(0))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "standard input is closed" in proc.stderr
