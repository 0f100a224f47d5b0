"""Each pin against its upstream's newest release: the comparison, the table, the JSON.

A pin is `current`, `behind` (by how many releases, and whether the first number that
moved is the major, minor or patch one), `ahead` (pinned above what the upstream
lists), `untracked` (the table says why it is not asked: it follows its image or
installer, or nobody lists it) or `error` (the upstream could not be asked).  The
verdict: behind when any pin is (a fact however the rest went), else inconclusive
when any could not be asked, else current.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildkit.progress import Progress
from buildkit.upstream import sources, versions
from buildkit.upstream.client import Client, UpstreamError
from buildkit.upstream.pins import Pin, default_torch, spec_pins
from buildkit.upstream.table import Upstreams
from verify.boundary.values import printable
from verify.exitcodes import Exit

SCHEMA_VERSION = 1
STATUSES = ("current", "behind", "ahead", "untracked", "error")


@dataclass
class Row:
    pin: Pin
    status: str
    upstream: str | None = None  # which endpoint answered (pypi, github, ...)
    answer: sources.Answer | None = None
    reason: str | None = None  # untracked or error: why; otherwise a note
    compared: str | None = None  # the version compared when the pin is not one (a tag)
    follows: dict[str, str] = field(default_factory=dict)  # base key -> its new value

    @property
    def newest(self) -> str | None:
        return self.answer.newest if self.answer else None

    def behind(self) -> dict[str, Any] | None:
        if self.status != "behind" or self.answer is None:
            return None
        return {"releases": len(versions.newer_than(self._pinned(), self.answer.versions)),
                "level": versions.gap(self._pinned(), self.answer.newest)}

    def _pinned(self) -> str:
        return self.compared or self.pin.pinned


class Checker:
    """Asks each pin's upstream once, in an order where what a pin follows comes first."""

    def __init__(self, raw: dict[str, Any], table: Upstreams, client: Client,
                 progress: Progress) -> None:
        self.raw, self.table, self.client, self.progress = raw, table, client, progress
        self.rows: dict[tuple, Row] = {}

    def run(self) -> list[Row]:
        pins = spec_pins(self.raw)
        order = {"image": 0, "torch": 1, "wheel": 2, "component": 3}
        for pin in sorted(pins, key=lambda p: order[p.kind]):
            self.progress.status(f"{pin.label()} ({pin.pinned})")
            try:
                row = getattr(self, f"_{pin.kind}")(pin)
            except (UpstreamError, versions.NotARelease) as exc:  # an answer we cannot use
                row = Row(pin, "error", reason=str(exc))
            self.rows[pin.path] = row
        self.progress.done()
        return [self.rows[pin.path] for pin in pins]

    def _compare(self, pin: Pin, upstream: str, answer: sources.Answer,
                 pinned: str | None = None) -> Row:
        have = versions.pinned_release(pinned or pin.pinned)
        want = versions.release(answer.newest)
        status = "behind" if want > have else "ahead" if want < have else "current"
        return Row(pin, status, upstream, answer, compared=pinned)

    def _wheel(self, pin: Pin) -> Row:
        return self._compare(pin, "pypi", sources.pypi(self.client, self.table, pin.name))

    def _image(self, pin: Pin) -> Row:
        row = self.table.images.get(pin.name)
        if row is None:
            return Row(pin, "untracked", reason=f"no row for {pin.name} in images/upstream.yaml")
        if row["upstream"] == "none":
            return Row(pin, "untracked", reason=row["reason"])
        for tags in self.table.image_tags[pin.name]:
            match = tags.pattern.fullmatch(pin.pinned)
            if match:
                answer = sources.dockerhub(self.client, self.table, pin.name, tags)
                result = self._compare(pin, "dockerhub", answer, match["version"])
                result.follows.update({key: answer.groups[group]
                                       for key, group in tags.sets.items()
                                       if group in answer.groups})
                if result.status == "current" and pin.image and pin.image.digest and \
                        answer.digest and answer.digest != pin.image.digest:
                    result.reason = f"tag {answer.tag} now names {answer.digest}"
                return result
        return Row(pin, "untracked", reason=f"tag {pin.pinned!r} matches no tags pattern of "
                                            f"images.{pin.name} in images/upstream.yaml")

    def _torch(self, pin: Pin) -> Row:
        image = self.table.images.get(pin.image.repository if pin.image else "")
        if image and image["carries_torch"]:
            return Row(pin, "untracked", reason=f"comes with the image {pin.image.text()}: "
                                                "moves with that pin")
        return self._compare(pin, "pypi", sources.pypi(self.client, self.table, "torch"))

    def torch_target(self, scope: str) -> str | None:
        """The torch the scope's default base has once its pins move: the newest of its
        own pin, or the one its image's newest tag carries."""
        path = default_torch(self.raw, scope)
        row = self.rows.get(path) if path else None
        if row is None:
            return None
        if row.status == "untracked":  # it comes with its image
            image_row = self.rows.get((*row.pin.base_choice, "image"))
            if image_row and image_row.status == "error":
                raise UpstreamError(f"torch of {row.pin.label()} follows its image, which "
                                    f"could not be asked: {image_row.reason}")
            moved = image_row.follows.get("torch") if image_row else None
            return moved or row.pin.pinned
        if row.status == "error":
            raise UpstreamError(f"the torch NCCL follows could not be asked: {row.reason}")
        return row.newest if row.status == "behind" else row.pin.pinned

    def _component(self, pin: Pin) -> Row:
        if pin.bundled:
            return Row(pin, "untracked", reason="the EFA installer brings it: follows "
                                                "efa_installer")
        row = self.table.components.get(pin.name)
        if row is None:
            return Row(pin, "untracked",
                       reason=f"no row for {pin.name} in images/upstream.yaml")
        if row["upstream"] == "github":
            answer = sources.github(self.client, self.table, row,
                                    self.table.component_tags[pin.name])
            return self._compare(pin, "github", answer)
        if row["upstream"] == "efa_release_notes":
            answer = sources.efa_release_notes(self.client, self.table,
                                               self.table.component_tags[pin.name])
            return self._compare(pin, "efa_release_notes", answer)
        if row.get("follows_torch"):
            torch = self.torch_target(pin.scope)
            if torch is None:
                raise UpstreamError(f"{pin.label()}: follows torch, and the default base "
                                    "pins none")
            answer = sources.torch_requirement(self.client, self.table, torch, row["package"])
            result = self._compare(pin, "pypi", answer)
            wheel = sources.pypi(self.client, self.table, row["package"])
            result.reason = (f"torch {torch} requires {row['package']}=={answer.newest}; "
                             f"the newest wheel is {wheel.newest}")
            return result
        return self._compare(pin, "pypi", sources.pypi(self.client, self.table, row["package"]))


def verdict(rows: list[Row]) -> tuple[str, Exit]:
    statuses = {row.status for row in rows}
    if "behind" in statuses:
        return "behind", Exit.FAIL
    if "error" in statuses:
        return "inconclusive", Exit.INCONCLUSIVE
    return "current", Exit.PASS


def _behind_text(row: Row) -> str:
    behind = row.behind()
    if behind:
        count = behind["releases"]
        return f"behind {count} release{'s' if count != 1 else ''} ({behind['level']})"
    return row.status


def to_text(rows: list[Row], spec: Path) -> str:
    """The table a person reads: one line per pin, then why for the others."""
    header = ("PIN", "PINNED", "NEWEST", "STATUS", "ASKED")
    lines = [header]
    notes = []
    for row in rows:
        asked = {"pypi": "PyPI", "github": "GitHub", "dockerhub": "Docker Hub",
                 "efa_release_notes": "AWS release notes"}.get(row.upstream or "", "-")
        lines.append(tuple(printable(cell) for cell in (
            row.pin.label(), row.pin.pinned, row.newest or "-", _behind_text(row), asked)))
        if row.reason:
            notes.append(printable(f"  {row.pin.label()}: {row.reason}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
           for line in lines]
    counts = {status: sum(row.status == status for row in rows) for status in STATUSES}
    name, _ = verdict(rows)
    out.append("")
    tally = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    out.append(printable(f"{spec}: {name}: {tally}"))
    if notes:
        out.append("notes:")
        out.extend(notes)
    return "\n".join(out) + "\n"


def to_json(rows: list[Row], spec: Path, table: Upstreams) -> dict[str, Any]:
    """The record (buildkit/schema/outdated.schema.json)."""
    name, code = verdict(rows)
    pins = []
    for row in rows:
        answer = row.answer
        pins.append({
            "where": row.pin.label(), "scope": row.pin.scope, "kind": row.pin.kind,
            "name": row.pin.name, "pinned": row.pin.pinned,
            "path": [str(part) for part in row.pin.path],
            "status": row.status, "newest": row.newest, "behind": row.behind(),
            "upstream": row.upstream, "asked": answer.url if answer else None,
            "tag": answer.tag if answer else None,
            "published": answer.published if answer else None,
            "commit": answer.commit if answer else None,
            "digest": answer.digest if answer else None,
            "files": answer.files if answer else [],
            "note": row.reason,
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "spec": str(spec),
        "checked_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "verdict": name,
        "exit_code": int(code),
        "counts": {status: sum(row.status == status for row in rows) for status in STATUSES},
        "endpoints": dict(table.endpoints),
        "pins": pins,
    }
