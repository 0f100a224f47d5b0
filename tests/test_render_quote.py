"""An env value reaches the Dockerfile as one ENV value, whatever its text (issue #24:
values leave efakit only through the target language's quoting).  The spec schema
refuses control characters first; dockerfile_quote is the last guard before a value
could start a second instruction, so it is tested on its own."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildkit.render import RenderError, dockerfile_quote

CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _unquote(word: str) -> str:
    """What Docker's ENV parser reads from one double-quoted word."""
    assert word[0] == word[-1] == '"' and len(word) >= 2, word
    return re.sub(r'\\(.)', r"\1", word[1:-1], flags=re.S)


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=24))
def test_a_value_is_one_dockerfile_word_that_reads_back_as_itself_or_is_refused(value):
    if CONTROL.search(value):
        with pytest.raises(RenderError, match="control character"):
            dockerfile_quote(value)
        return
    word = dockerfile_quote(value)
    assert "\n" not in word and "\r" not in word
    if word == value:  # plain: nothing Docker would split, expand or unescape
        assert re.fullmatch(r"[A-Za-z0-9_./:,=+@%-]*", value)
    else:
        assert _unquote(word) == value
        assert not re.search(r'(?<!\\)(?:\\\\)*[$"]', word[1:-1])  # every $ and " escaped


@pytest.mark.parametrize("value", ["a\nRUN touch /x", "x\rRUN y", "tab\there", "\x7f"])
def test_a_control_character_is_refused(value):
    with pytest.raises(RenderError):
        dockerfile_quote(value)
