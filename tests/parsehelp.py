"""Helpers for parser tests: parse text or files into a result dict."""

from __future__ import annotations

from pathlib import Path

from verify.logparse.result import Options, build, parse_sources
from verify.logparse.sources import expand
from verify.policy import load_policy
from verify.profiles import resolve


def parse_paths(paths: list[str | Path], instance: str | None = None, policy=None,
                **options) -> dict:
    model, inputs = parse_sources(expand([str(p) for p in paths]))
    opts = Options(resolve(instance) if instance else None,
                   "--instance-type" if instance else None, **options)
    return build(model, inputs, opts, policy or load_policy(None))


def parse_text(tmp_path: Path, text: str | bytes, name: str = "rank.log", **kw) -> dict:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return parse_paths([path], **kw)


def check(result: dict, name: str) -> dict:
    return next(c for c in result["checks"] if c["name"] == name)
