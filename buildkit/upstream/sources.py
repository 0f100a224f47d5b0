"""One reader per kind of upstream: the newest final release and what proves it.

Each reader takes the answer apart field by field and checks every field it uses, so
a changed or broken answer is an UpstreamError naming the URL and the field, never a
traceback and never a wrong version.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from buildkit.upstream import versions
from buildkit.upstream.client import Client, UpstreamError
from buildkit.upstream.table import ImageTags, Upstreams
from verify.boundary.values import shown

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_REQUIRES_RE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*(?P<version>[0-9][0-9.]*)",
                          re.ASCII)


@dataclass
class Answer:
    """The newest final release an upstream lists, and the evidence for it."""

    url: str  # what was asked
    newest: str
    versions: list[str]  # every final release seen
    tag: str | None = None  # the tag or image tag that names it
    published: str | None = None  # date, where the upstream says
    commit: str | None = None  # a source tag's commit
    digest: str | None = None  # an image's manifest digest
    files: list[dict[str, str]] = field(default_factory=list)  # PyPI: filename, sha256
    requires: dict[str, str] = field(default_factory=dict)  # PyPI: name -> == version
    groups: dict[str, str] = field(default_factory=dict)  # an image tag's pattern groups


def _field(doc: Any, key: str, kind: type | tuple[type, ...], url: str) -> Any:
    if not isinstance(doc, dict) or key not in doc:
        raise UpstreamError(f"{url}: malformed answer: no {key!r}")
    value = doc[key]
    if not isinstance(value, kind):
        raise UpstreamError(f"{url}: malformed answer: {key!r} is {type(value).__name__}")
    return value


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pypi(client: Client, table: Upstreams, project: str, version: str | None = None) -> Answer:
    """The newest final release of a PyPI project with at least one file not yanked;
    with `version`, that release's own answer (its files and requirements)."""
    base = table.endpoints["pypi"]
    path = urllib.parse.quote(project) + (f"/{urllib.parse.quote(version)}" if version else "")
    url = f"{base}/{path}/json"
    doc = client.get_json(url)
    info = _field(doc, "info", dict, url)
    if version is None:
        releases = _field(doc, "releases", dict, url)
        finals = []
        for name, files in releases.items():
            if not isinstance(files, list):
                raise UpstreamError(f"{url}: malformed answer: releases[{name!r}] is not a list")
            if versions.FINAL_RE.fullmatch(str(name)) and any(
                    isinstance(f, dict) and not f.get("yanked") for f in files):
                finals.append(str(name))
        top = versions.newest(finals)
        if top is None:
            raise UpstreamError(f"{url}: no final release listed")
        files = releases[top]
    else:
        top, finals = version, [version]
        files = _field(doc, "urls", list, url)
    answer = Answer(url=url, newest=top, versions=finals)
    for item in files:
        filename = _field(item, "filename", str, url)
        digest = _field(_field(item, "digests", dict, url), "sha256", str, url)
        if not _SHA256_RE.fullmatch(digest):
            raise UpstreamError(f"{url}: malformed answer: sha256 of {filename!r} is {digest!r}")
        if item.get("upload_time_iso_8601") and answer.published is None:
            answer.published = str(item["upload_time_iso_8601"])[:10]
        if table.wheel_files.fullmatch(filename) and not item.get("yanked"):
            answer.files.append({"file": filename, "sha256": digest})
    if str(info.get("version")) == top:
        for line in info.get("requires_dist") or []:
            match = _REQUIRES_RE.match(str(line))
            if match:
                answer.requires[_canonical(match["name"])] = match["version"]
    return answer


def torch_requirement(client: Client, table: Upstreams, torch: str, project: str) -> Answer:
    """What torch `torch` pins `project` to (its Linux wheels' Requires-Dist)."""
    answer = pypi(client, table, "torch", torch)
    wanted = answer.requires.get(_canonical(project))
    if wanted is None:
        raise UpstreamError(f"{answer.url}: torch {torch} names no {project}==... requirement")
    if not versions.FINAL_RE.fullmatch(wanted):
        raise UpstreamError(f"{answer.url}: torch {torch} requires {project}=="
                            f"{shown(wanted)}, not a final release")
    return Answer(url=answer.url, newest=wanted, versions=[wanted])


def github(client: Client, table: Upstreams, row: dict[str, Any], pattern: re.Pattern[str]
           ) -> Answer:
    """The newest release of a repository among one page (100) of its releases or tags;
    drafts and pre-releases do not count, nor tags outside the component's pattern."""
    url = f"{table.endpoints['github']}/repos/{row['repo']}/{row['api']}?per_page=100"
    doc = client.get_json(url)
    if not isinstance(doc, list):
        raise UpstreamError(f"{url}: malformed answer: expected a list, got "
                            f"{type(doc).__name__}")
    found: dict[str, dict[str, Any]] = {}
    for item in doc:
        if row["api"] == "releases":
            tag = _field(item, "tag_name", str, url)
            if item.get("draft") or item.get("prerelease"):
                continue
        else:
            tag = _field(item, "name", str, url)
        version = versions.from_tag(tag, pattern)
        if version is not None:
            found.setdefault(version, {"tag": tag, **item})
    top = versions.newest(found)
    if top is None:
        raise UpstreamError(f"{url}: no tag matches {pattern.pattern!r}")
    item = found[top]
    commit = (item.get("commit") or {}).get("sha") if isinstance(item.get("commit"), dict) \
        else None
    return Answer(url=url, newest=top, versions=list(found), tag=item["tag"],
                  published=str(item.get("published_at") or "")[:10] or None,
                  commit=commit if isinstance(commit, str) and _COMMIT_RE.fullmatch(commit)
                  else None)


def dockerhub(client: Client, table: Upstreams, repository: str, tags: ImageTags) -> Answer:
    """The newest tag of the pinned tag's kind among the 100 most recently pushed tags
    whose name holds the row's filter, with its manifest digest."""
    namespace, _, name = repository.rpartition("/")
    query = urllib.parse.urlencode({"page_size": 100, "ordering": "last_updated",
                                    "name": tags.name_filter})
    url = f"{table.endpoints['dockerhub']}/repositories/{namespace or 'library'}/{name}/tags?" \
          f"{query}"
    doc = client.get_json(url)
    results = _field(doc, "results", list, url)
    found: dict[str, dict[str, Any]] = {}
    for item in results:
        tag = _field(item, "name", str, url)
        match = tags.pattern.fullmatch(tag)
        if match and versions.FINAL_RE.fullmatch(match["version"]):
            found.setdefault(match["version"], {"tag": tag, "groups": match.groupdict(),
                                                **item})
    top = versions.newest(found)
    if top is None:
        raise UpstreamError(f"{url}: no tag matches {tags.pattern.pattern!r}")
    item = found[top]
    digest = item.get("digest")
    return Answer(url=url, newest=top, versions=list(found), tag=item["tag"],
                  published=str(item.get("last_updated") or "")[:10] or None,
                  digest=digest if isinstance(digest, str) and _DIGEST_RE.fullmatch(digest)
                  else None, groups={k: v for k, v in item["groups"].items() if v})


def efa_release_notes(client: Client, table: Upstreams, pattern: re.Pattern[str]) -> Answer:
    """The highest installer version the release notes name."""
    url = table.endpoints["efa_release_notes"]
    text = re.sub(r"<[^>]*>", " ", client.get_text(url))
    found = [m["version"] for m in pattern.finditer(text)
             if versions.FINAL_RE.fullmatch(m["version"])]
    top = versions.newest(found)
    if top is None:
        raise UpstreamError(f"{url}: no installer version found (pattern "
                            f"{pattern.pattern!r})")
    return Answer(url=url, newest=top, versions=sorted(set(found), key=versions.release))
