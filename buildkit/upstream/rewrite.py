"""--update-pins: the newest versions written into a copy of the spec, for review.

Why not a YAML round trip: PyYAML's safe_dump drops every comment, and the spec's
comments carry the reasons for its pins (a dumped copy would bury the few changed
values under a diff of the whole file); ruamel.yaml keeps comments but is not a
dependency of efakit.  So the copy is the spec's own text with only the changed
scalars replaced, at the spans PyYAML's composer reports, each new scalar emitted by
yaml.safe_dump (in the quoting style the old one had) and each provenance comment
built from checked parts.  The same changes are applied to the parsed spec, and the
copy must parse to exactly that and validate as a spec (every profile) before it is
written, atomically; the spec itself is never written.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from buildkit.spec import SpecError, load_spec
from buildkit.upstream.pins import ImageRef
from buildkit.upstream.report import Row
from buildkit.upstream.table import Upstreams
from verify.boundary.files import write_atomic

KeyPath = tuple[str | int, ...]


class RewriteError(RuntimeError):
    """The copy could not be made as asked, phrased as one line."""


@dataclass(frozen=True)
class Change:
    """Set the value at `path`; with `rename`, the key itself becomes `rename`; with
    `after`, a new key `path[-1]` is added to its mapping after the key `after`."""

    path: KeyPath
    value: Any
    rename: str | None = None
    after: str | None = None


@dataclass(frozen=True)
class Comment:
    """A comment line above the key at `path`."""

    path: KeyPath
    text: str


def _comment_text(text: str) -> str:
    """One line of printable ASCII: a comment must not end early or add a line."""
    return re.sub(r"[^\x20-\x7e]", "?", text)


def _scalar(value: Any, style: str | None, in_flow: bool = False) -> str:
    """`value` as a YAML scalar, emitted by the dumper in the old value's style; inside a
    flow collection (`[a, b]`) as the dumper writes an item there (`,` `]` need quotes)."""
    quoted = style in ('"', "'") and isinstance(value, str)  # null stays null
    if in_flow:
        text = yaml.safe_dump([value], default_style=style if quoted else None,
                              default_flow_style=True, width=1 << 20, allow_unicode=False)
        text = text.removeprefix("[").removesuffix("\n").removesuffix("]")
    else:
        text = yaml.safe_dump(value, default_style=style if quoted else None,
                              width=1 << 20, allow_unicode=False)
        text = text.removesuffix("\n...\n").removesuffix("\n")
    if "\n" in text:
        raise RewriteError(f"cannot write {value!r} as a one-line scalar")
    return text


def _find(root: yaml.Node, path: KeyPath) -> tuple[yaml.Node | None, yaml.Node, bool]:
    """The key node and value node at `path`, and whether it sits in a flow collection."""
    key_node, node, in_flow = None, root, False
    for part in path:
        in_flow = in_flow or bool(getattr(node, "flow_style", False))
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == part), None)
            if pair is None:
                raise RewriteError(f"no key {'.'.join(map(str, path))} in the spec")
            key_node, node = pair
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            key_node, node = None, node.value[part]
        else:
            raise RewriteError(f"no key {'.'.join(map(str, path))} in the spec")
    return key_node, node, in_flow


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def apply_text(text: str, changes: list[Change], comments: list[Comment]) -> str:
    """The spec's text with each change made at its span and each comment inserted."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    spans: list[tuple[int, int, str]] = []
    inserts: dict[int, list[str]] = {}
    for change in changes:
        if change.after is not None:
            key, value, _ = _find(root, (*change.path[:-1], change.after))
            end = text.find("\n", value.end_mark.index)
            end = len(text) if end < 0 else end + 1
            indent = " " * key.start_mark.column
            inserts.setdefault(end, []).append(
                f"{indent}{change.path[-1]}: {_scalar(change.value, None)}\n")
            continue
        key, node, in_flow = _find(root, change.path)
        if not isinstance(node, yaml.ScalarNode):
            raise RewriteError(f"{'.'.join(map(str, change.path))}: not a scalar in the spec")
        spans.append((node.start_mark.index, node.end_mark.index,
                      _scalar(change.value, node.style, in_flow)))
        if change.rename is not None and key is not None:
            spans.append((key.start_mark.index, key.end_mark.index, change.rename))
    for comment in comments:
        key, node, _ = _find(root, comment.path)
        anchor = key if key is not None else node
        start = _line_start(text, anchor.start_mark.index)
        inserts.setdefault(start, []).append(
            f"{' ' * anchor.start_mark.column}# {_comment_text(comment.text)}\n")
    spans.extend((pos, pos, "".join(lines)) for pos, lines in inserts.items())
    for start, end, new in sorted(spans, key=lambda s: (s[0], s[1]), reverse=True):
        text = text[:start] + new + text[end:]
    return text


def apply_data(raw: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
    """The same changes made to the parsed spec: what the copy must parse to."""
    data = copy.deepcopy(raw)
    for change in changes:
        holder: Any = data
        for part in change.path[:-1]:
            holder = holder[part]
        last = change.path[-1]
        if change.rename is not None:
            del holder[last]
            last = change.rename
        holder[last] = change.value
    return data


class Planner:
    """The changes and comments that bring each behind pin to its newest release."""

    def __init__(self, raw: dict[str, Any], table: Upstreams, today: str) -> None:
        self.raw, self.table, self.today = raw, table, today
        self.changes: list[Change] = []
        self.comments: list[Comment] = []

    def _value(self, path: KeyPath) -> Any:
        node: Any = self.raw
        for part in path:
            node = node[part]
        return node

    def _set_or_add(self, mapping: KeyPath, key: str, value: Any, after: str) -> None:
        if key in self._value(mapping):
            self.changes.append(Change((*mapping, key), value))
        else:
            self.changes.append(Change((*mapping, key), value, after=after))

    def plan(self, rows: list[Row]) -> None:
        for row in rows:
            if row.status == "behind" and row.answer is not None:
                getattr(self, f"_{row.pin.kind}")(row)

    def _files_note(self, row: Row) -> str:
        files = "; ".join(f"{f['file']} sha256 {f['sha256']}" for f in row.answer.files[:3])
        return f"{row.pin.name} {row.newest} on {row.answer.url}" + \
            (f": {files}" if files else "")

    def _wheel(self, row: Row) -> None:
        self.changes.append(Change(row.pin.path, f"{row.pin.name}=={row.newest}"))
        choice = row.pin.base_choice
        if choice and row.pin.name == self.table.cuda_from and "cuda" in self._value(choice):
            self.changes.append(Change((*choice, "cuda"), ".".join(row.newest.split(".")[:2])))
        self.comments.append(Comment(row.pin.path[:-1], f"efakit outdated {self.today}: "
                                                         + self._files_note(row)))

    def _torch(self, row: Row) -> None:
        self.changes.append(Change(row.pin.path, row.newest))
        self.comments.append(Comment(row.pin.path, f"efakit outdated {self.today}: "
                                                   + self._files_note(row)))

    def _image(self, row: Row) -> None:
        answer, old = row.answer, row.pin.image
        new = ImageRef(row.pin.name, answer.tag, answer.digest).text()
        self.changes.append(Change(row.pin.path, new))
        for key, value in row.follows.items():
            if key in self._value(row.pin.base_choice):
                self.changes.append(Change((*row.pin.base_choice, key), value))
        digest = f"digest {answer.digest}" if answer.digest else "no digest published"
        self.comments.append(Comment(row.pin.path, (
            f"efakit outdated {self.today}: {old.text() if old else row.pin.pinned} -> "
            f"{row.pin.name}:{answer.tag} ({digest}, {answer.url}); the why below still "
            "speaks of the old tag: review it")))

    def _component(self, row: Row) -> None:
        pin, answer = row.pin, row.answer
        comp_path = pin.path[:-1]
        comp = self._value(comp_path)
        upstream = self.table.components[pin.name]
        self.changes.append(Change(pin.path, answer.newest))
        values = {"version": answer.newest, "tag": answer.tag or answer.newest}
        proof = f"newest release {answer.tag or answer.newest}" + \
            (f" (commit {answer.commit})" if answer.commit else "") + f" on {answer.url}"
        if "url" in comp and "url" in upstream:
            self.changes.append(Change((*comp_path, "url"), upstream["url"].format(**values)))
            if "file" in comp and "file" in upstream:
                self.changes.append(Change((*comp_path, "file"),
                                           upstream["file"].format(**values)))
            if "signature" in comp and "signature_url" in upstream:
                self.changes.append(Change((*comp_path, "signature", "url"),
                                           upstream["signature_url"].format(**values)))
            self._unpin(comp_path, comp, answer.tag or answer.newest)
        if "bundles" in comp:
            self.comments.append(Comment((*comp_path, "bundles"), (
                f"efakit outdated {self.today}: these are {pin.pinned}'s bundled versions: "
                f"read {answer.newest}'s from the release notes ({answer.url})")))
        if row.reason:
            proof += f"; {row.reason}"
        self._set_or_add(comp_path, "provenance",
                         f"efakit outdated --update-pins {self.today}: {proof}", "version")

    def _unpin(self, comp_path: KeyPath, comp: dict[str, Any], tag: str) -> None:
        """The old digest does not cover the new download: `sha256: null` with the reason,
        until fetch-artifacts computes it where the download can be reached."""
        kind = next((k for k in ("tree", "sha512", "sha256") if k in comp), None)
        reason = (f"not computed yet for {tag}: run `efakit fetch-artifacts --update-pins` "
                  "where the download can be reached, then review the digest")
        if kind is None:
            return
        self.changes.append(Change((*comp_path, kind), None,
                                   rename="sha256" if kind != "sha256" else None))
        self._set_or_add(comp_path, "reason", reason, kind)


def _validate(text: str, raw: dict[str, Any], framework: str, out: Path) -> None:
    """The copy must load as a spec with every profile applied; if not, the message
    names `out` (which is then not written), never the temporary file checked."""
    with tempfile.TemporaryDirectory(prefix="efakit-update-pins-") as tmp:
        path = Path(tmp) / f"{framework}.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            for profile in [None, *(raw.get("profiles") or {})]:
                load_spec(path, profile=profile)
        except SpecError as exc:
            raise RewriteError(f"{out}: not written, the updated copy would not be a valid "
                               f"spec: {str(exc).replace(str(path), out.name)}") from None


def write_copy(spec: Path, raw: dict[str, Any], rows: list[Row], table: Upstreams,
               out: Path) -> list[Change]:
    """Write the spec with every behind pin moved to `out`; return the changes made."""
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    planner = Planner(raw, table, today)
    planner.plan(rows)
    text = spec.read_text(encoding="utf-8")
    new = apply_text(text, planner.changes, planner.comments)
    if yaml.safe_load(new) != apply_data(raw, planner.changes):
        raise RewriteError("the edited copy does not parse to the intended spec: "
                           "nothing written")
    _validate(new, raw, str(raw.get("framework")), out)
    write_atomic(out, new, inputs=[spec])
    return planner.changes
