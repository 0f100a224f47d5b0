"""The upstream comparer (buildkit/upstream/versions.py) and the copy's text edits
(buildkit/upstream/rewrite.py): properties over generated versions, tags and values,
and the hand-picked tags that broke naive comparers."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from buildkit.upstream import versions
from buildkit.upstream.rewrite import Change, Comment, RewriteError, apply_data, apply_text
from buildkit.upstream.table import load_upstreams

parts = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=5)


def _text(numbers: list[int]) -> str:
    return ".".join(map(str, numbers))


def _padded(numbers: list[int], width: int = 6) -> tuple[int, ...]:
    return tuple(numbers) + (0,) * (width - len(numbers))


@settings(max_examples=200, deadline=None)
@given(st.lists(parts, min_size=1, max_size=8))
def test_newest_is_the_highest_by_numbers_not_by_text(candidates):
    """'2.10' is above '2.9', '13.3.5.0.6' below '13.5', '2.6' equals '2.6.0'."""
    texts = [_text(c) for c in candidates]
    top = versions.newest(texts)
    assert _padded([int(p) for p in top.split(".")]) == max(_padded(c) for c in candidates)


@settings(max_examples=200, deadline=None)
@given(parts, st.integers(min_value=1, max_value=3))
def test_trailing_zeros_do_not_make_another_release(numbers, zeros):
    assert versions.release(_text(numbers)) == versions.release(_text(numbers + [0] * zeros))


@settings(max_examples=200, deadline=None)
@given(parts, parts)
def test_gap_names_the_first_number_that_moved(pinned, target):
    level = versions.gap(_text(pinned), _text(target))
    a, b = _padded(pinned), _padded(target)
    if b <= a:
        assert level is None
    else:
        first = next(i for i in range(6) if a[i] != b[i])
        assert level == ("major", "minor", "patch", "patch", "patch", "patch")[first]


@settings(max_examples=200, deadline=None)
@given(parts, st.lists(parts, max_size=8))
def test_newer_than_counts_each_higher_release_once(pinned, listed):
    texts = [_text(v) for v in listed] + [_text(v) + ".0" for v in listed]  # same releases
    newer = versions.newer_than(_text(pinned), texts)
    want = {_padded(v) for v in listed if _padded(v) > _padded(pinned)}
    assert len(newer) == len(want)
    assert [versions.release(v) for v in newer] == sorted(versions.release(v) for v in newer)


TABLE = load_upstreams()


@settings(max_examples=200, deadline=None)
@given(parts, st.sampled_from(["rc1", "rc2", "a0", "b1", ".dev3", "-rc1", "amzn1.0"]))
def test_a_tag_is_a_release_only_in_its_components_form(numbers, suffix):
    """v1.21.1 and v1.13.2-aws are releases of aws-ofi-nccl; candidates never are."""
    aws = TABLE.component_tags["aws_ofi_nccl"]
    version = _text(numbers[:3] + [0] * (3 - len(numbers[:3])))
    assert versions.from_tag(f"v{version}", aws) == version
    assert versions.from_tag(f"v{version}-aws", aws) == version
    assert versions.from_tag(f"v{version}{suffix}", aws) is None
    assert versions.from_tag(f"aws-ofi-nccl-{version}", aws) is None


@pytest.mark.parametrize(("component", "tag", "version"), [
    ("libfabric", "v2.6.0", "2.6.0"), ("libfabric", "v2.6.0rc2", None),
    ("libfabric", "libfabric-2.6.0", None), ("libfabric", "dev", None),
    ("rdma_core", "v64.0", "64.0"), ("rdma_core", "v63.1", "63.1"),
    ("gdrcopy", "v2.6", "2.6"), ("gdrcopy", "v2.5.2", "2.5.2"),
    ("nccl_tests", "v2.19.6", "2.19.6"), ("aws_ofi_nccl", "v1.9.2-aws", "1.9.2"),
])
def test_tags_seen_upstream(component, tag, version):
    assert versions.from_tag(tag, TABLE.component_tags[component]) == version


def test_a_stable_branch_tag_pushed_later_is_not_the_newest():
    """rdma-core tagged v63.1 and v62.1 after v64.0 (2026-07-06 vs -08)."""
    assert versions.newest(["v62.1"[1:], "64.0", "63.1"]) == "64.0"
    assert versions.pinned_release("2.13.0a0") == (2, 13)
    with pytest.raises(versions.NotARelease):
        versions.pinned_release("latest")


DOC = """\
# a comment that must survive
top:
  # the pin's reason
  version: "1.0"   # trailing comment
  items: [a==1, b==2]
  plain: x
"""


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40), st.text(max_size=60))
def test_a_new_value_and_comment_are_emitted_by_the_dumper(value, note):
    """Whatever the value (quotes, ': ', '#', non-ASCII), the copy parses to exactly the
    intended data and keeps every comment; a value that cannot be one line is refused."""
    changes = [Change(("top", "version"), value), Change(("top", "items", 1), value),
               Change(("top", "plain"), value)]
    try:
        text = apply_text(DOC, changes, [Comment(("top", "version"), note)])
    except RewriteError:
        assert any(c in value for c in "\n\r\x85\u2028\u2029") or not value.isprintable()
        return
    assert yaml.safe_load(text) == apply_data(yaml.safe_load(DOC), changes)
    for line in DOC.splitlines():
        if line.strip().startswith("#"):
            assert line in text
    assert "# trailing comment" in text
    assert len(text.splitlines()) == len(DOC.splitlines()) + 1


def test_a_key_renamed_and_one_added_keep_the_order():
    changes = [Change(("top", "version"), None, rename="sha256"),
               Change(("top", "reason"), "not known: yet", after="version")]
    text = apply_text(DOC, changes, [])
    assert yaml.safe_load(text) == apply_data(yaml.safe_load(DOC), changes)
    assert re.search(r'sha256: null   # trailing comment\n  reason: .not known: yet.\n', text)


# --- what an answer may not pass off as a release (attack-1 SA-16, TB-3) ----------------

_NON_ASCII_DIGITS = st.sampled_from("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹०१२३४५६७८९０１２３４５６７８９")


@settings(max_examples=100, deadline=None)
@given(real=parts, foreign=st.lists(_NON_ASCII_DIGITS, min_size=1, max_size=4),
       huge=st.integers(min_value=19, max_value=6000))
def test_only_ascii_releases_of_bounded_length_count(real, foreign, huge):
    """`\\d` took Arabic-Indic digits for a release ('٩٩.٠' was torch's newest), and a
    5000-digit release made int() raise; neither is a release, and neither is ever the
    newest or a traceback."""
    fake = "".join(foreign) + ".0"
    long = "9" * huge + ".0"
    assert versions.newest([_text(real), fake, long]) == _text(real)
    assert versions.newer_than("0", [fake, long]) == []
    for text in (fake, long):
        with pytest.raises(versions.NotARelease) as caught:
            versions.release(text)
        assert len(str(caught.value)) < 200
    tags = load_upstreams().component_tags
    assert all(pattern.fullmatch(f"v{fake}.0") is None for pattern in tags.values())


def test_an_invalid_updated_copy_is_refused_naming_its_output_not_a_temp_file(tmp_path):
    """attack-1 W-6: the refusal named /tmp/efakit-update-pins-XXXX/pytorch.yaml, a file
    that no longer existed; it names the OUT.yaml that was not written."""
    from buildkit.upstream.rewrite import _validate

    out = tmp_path / "new.yaml"
    with pytest.raises(RewriteError) as caught:
        _validate("framework: pytorch\nno_such_key: 1\n", {}, "pytorch", out)
    message = str(caught.value)
    assert message.startswith(f"{out}: not written, the updated copy would not be a valid spec")
    assert "efakit-update-pins" not in message and "\n" not in message
    assert not out.exists()
