"""Compressed logs: a cut .gz keeps everything decoded before the cut, and a gzip bomb
stops early with a warning instead of costing minutes."""

from __future__ import annotations

import gzip
import time

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


def test_a_gzip_bomb_stops_early_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "BOMB_BYTES", 4 << 20)
    bomb = tmp_path / "zeros.log.gz"
    bomb.write_bytes(gzip.compress(b"\x00" * (64 << 20), compresslevel=9))
    start = time.monotonic()
    result = CliRunner().invoke(verify_cli.main, ["parse", str(bomb)])
    assert time.monotonic() - start < 30
    assert result.exit_code == 3 and "gzip bomb" in result.stdout and "WARNING" in result.stdout
