"""`efakit build`: render, then build with BuildKit; tag by content; record the result.

The content tag names the stack and a hash of the rendered context and the
base image: same inputs, same tag; any change, a new tag.  The source revision
and build time go in as labels (never into the rendered files), a failed step
is named with its last lines, and no tag is applied unless the build passed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from typing import TYPE_CHECKING, TextIO

from buildkit.buildsteps import STEP_RE, BuildSteps
from buildkit.engine import Engine, image_exists, image_id, repo_root_revision
from buildkit.mirror import check_mirror
from buildkit.paths import REPO_ROOT
from buildkit.progress import Progress
from buildkit.render import render_context
from buildkit.spec import PIN_KINDS, Spec
from verify.cliutil import CliError
from verify.exitcodes import Exit
from verify.versions import major_minor

if TYPE_CHECKING:
    from buildkit.ecr import Target

ERROR_RE = re.compile(r"^#(\d+) ERROR: (.*)$")
LOG_TAIL = 15


@dataclass
class BuildResult:
    image_id: str
    tags: list[str]
    log: Path
    context: Path

    def as_dict(self) -> dict:
        return {"image_id": self.image_id, "tags": self.tags, "log": str(self.log),
                "context": str(self.context)}


def unpinned(spec: Spec) -> list[str]:
    """Downloads whose digest (or signing key) is not pinned yet, with the spec's reason;
    and base images pulled by a floating tag (`--base cuda-runtime`, `--base ngc`): a tag
    can move to other bytes between two builds of the same spec, as an unpinned tarball
    can.  The offline profile's base is built here (make base-image), never pulled."""
    out = []
    if spec.profile != "offline":
        for key in ("image", "builder_image"):
            ref = spec.base.get(key)
            if ref and "@sha256:" not in ref:
                out.append(f"base {spec.base_name} {key} {ref} (a floating tag, not pinned "
                           "by digest: name:tag@sha256:...)")
    for name, comp in spec.components.items():
        if comp and comp.get("url") and not any(comp.get(k) for k in PIN_KINDS):
            out.append(f"{name} ({comp.get('reason', 'no reason given')})")
        signature = (comp or {}).get("signature")
        if signature and signature.get("key_fingerprint") is None:
            out.append(f"{name} signing key ({signature.get('reason', 'no reason given')})")
    return out


def _mm(version: str | None, none: str = "none") -> str:
    return major_minor(version) if version else none


def content_tag(spec: Spec, variant: str, context: Path, base_id: str) -> str:
    """`pytorch2.13-cudanone-efadeb-ofinone-nccl2.21-ec2-<hash>`: readable stack + hash."""
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        rel = path.relative_to(context)
        if rel.parts[0] == "artifacts" and path.suffix == ".whl":
            continue  # wheels are pinned by the hashes in the requirements files
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    versions = spec.versions()
    efa = _mm(versions["efa_installer"], "src" if "libfabric" in spec.components else "none")
    return (f"{spec.framework}{_mm(spec.base.get('torch'))}-cuda{_mm(spec.base.get('cuda'))}"
            f"-efa{efa}-ofi{_mm(versions['aws_ofi_nccl'])}-nccl{_mm(versions['nccl'])}"
            f"-{variant}-{digest.hexdigest()[:12]}")


def _copy_mirror(mirror: Path, dest: Path) -> None:
    for item in sorted(mirror.rglob("*")):
        target = dest / item.relative_to(mirror)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(item, target)
        except OSError:
            shutil.copy2(item, target)


def _ensure_base(engine: Engine, spec: Spec) -> str:
    ref = spec.base["image"]
    if image_exists(engine, ref):
        return image_id(engine, ref)
    if spec.profile == "offline":
        raise CliError(f"base image {ref} is not built here: run make base-image",
                       Exit.NO_ENGINE)
    pull = engine.run("pull", ref, check=False, timeout=1800)
    if pull.returncode != 0:
        last = (pull.stderr.strip().splitlines() or ["?"])[-1]
        raise CliError(f"cannot pull base image {ref} ({last}); without registry access, "
                       "build the offline profile: make ci-image", Exit.NO_ENGINE)
    return image_id(engine, ref)


def preflight(spec: Spec, mirror: Path | None, allow_unpinned: bool) -> None:
    """Input problems that stop a build before any engine is asked (exit 2)."""
    missing = unpinned(spec)
    if missing and not allow_unpinned:
        raise CliError("unpinned artifacts (pin downloads with efakit fetch-artifacts "
                       "--update-pins and bases by digest in the spec, or build with "
                       "--allow-unpinned): " + "; ".join(missing))
    if mirror is not None:
        problems = check_mirror(spec, mirror)
        if problems:
            raise CliError("; ".join(problems))


# A Docker repository path: lowercase components joined by '/' (no registry, no tag).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPO_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")


def image_repo(namespace: str, framework: str) -> str:
    """The repository a build tags into: NAMESPACE/FRAMEWORK (efakit/pytorch by default,
    efakit-test/pytorch in the tests)."""
    repo = f"{namespace}/{framework}"
    if not REPO_PATH_RE.fullmatch(repo) or len(repo) > 255:
        raise CliError(f"--namespace {namespace!r}: not a Docker repository path "
                       "(lowercase letters, digits, '.', '_', '-', components joined by '/')")
    return repo


def build_image(engine: Engine, spec: Spec, variant: str, out_dir: Path,
                mirror: Path | None, aliases: list[str], allow_unpinned: bool,
                repo: str | None = None, force: bool = False, ca_bundle: Path | None = None,
                no_cache: bool = False, cache_repo: str | None = None,
                reuse_from: Target | None = None) -> BuildResult:
    preflight(spec, mirror, allow_unpinned)
    base_id = _ensure_base(engine, spec)
    work = out_dir / f"{spec.framework}-{variant}{'-' + spec.profile if spec.profile else ''}"
    context = render_context(spec, variant, work / "context")
    if mirror is not None:
        _copy_mirror(mirror, context / "artifacts")
    repo = repo or f"efakit/{spec.framework}"
    tag = f"{repo}:{content_tag(spec, variant, context, base_id)}"
    log = work / "build.log"
    if image_exists(engine, tag) and not force:
        # Content-addressed: the same inputs are already built; rebuilding would only
        # change the created label, i.e. move an immutable tag to a new digest.
        log.write_text(f"{tag} exists: same inputs, nothing built\n", encoding="utf-8")
        return _finish(engine, spec, variant, out_dir, tag, repo, aliases, log, context)
    pulled = None if force else reuse_registry(engine, tag, reuse_from)
    if pulled is not None:
        log.write_text(f"{tag} pulled from {pulled}: same inputs, nothing built\n",
                       encoding="utf-8")
        return _finish(engine, spec, variant, out_dir, tag, repo, aliases, log, context)
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    cmd = engine.build_cmd() + [
        "--progress=plain", "-t", tag,
        "--label", f"org.opencontainers.image.revision={repo_root_revision(REPO_ROOT)}",
        "--label", f"org.opencontainers.image.created={created}",
        "--build-arg", f"EFAKIT_ALLOW_UNPINNED={1 if allow_unpinned else 0}"]
    if ca_bundle is not None:
        cmd += ["--secret", f"id=ca-bundle,src={ca_bundle.resolve()}"]
    if no_cache:
        cmd.append("--no-cache")
    cmd += registry_cache_args(engine, cache_repo, variant)
    cmd.append(str(context))
    progress = Progress(f"build {variant}")
    progress.note(f"building {tag}; full log: {log}")
    lines: list[str] = []
    steps = BuildSteps()
    with log.open("w", encoding="utf-8") as sink, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=engine.env(), errors="replace") as proc:
        assert proc.stdout is not None
        for text in _lines_or_ticks(proc.stdout):
            if text is None:  # nothing for a while: perhaps a heartbeat
                said = steps.tick(time.monotonic())
            else:
                sink.write(text)
                lines.append(text.rstrip("\n"))
                del lines[:-400]
                said = steps.feed(text, time.monotonic())
            for line in said:
                progress.status(line)
    for line in steps.finish(time.monotonic()):
        progress.status(line)
    progress.done()
    if proc.returncode != 0:
        raise CliError(_failure(lines, log), Exit.FAIL)
    return _finish(engine, spec, variant, out_dir, tag, repo, aliases, log, context)


def _lines_or_ticks(stream: TextIO, every: float = 5.0) -> Iterator[str | None]:
    """The stream's lines as they come, and None after each `every` seconds without one:
    a step that prints nothing must not stop the heartbeat.  A daemon thread reads, so a
    blocked read never holds the build's loop."""
    queue: Queue[str | None] = Queue()

    def read() -> None:
        for text in stream:
            queue.put(text)
        queue.put(_END)

    threading.Thread(target=read, daemon=True).start()
    while True:
        try:
            text = queue.get(timeout=every)
        except Empty:
            yield None
            continue
        if text is _END:
            return
        yield text


_END = "\0end"


def reuse_registry(engine: Engine, tag: str, target: Target | None) -> str | None:
    """Pull the content tag from the registry it is pushed to, when it is there; the
    reference pulled, or None (then the caller builds).

    Two clean builds of the same inputs differ in digest (the image config's created
    times and label; apt and pip versions resolved at build time; Docker 20.10's
    BuildKit predates SOURCE_DATE_EPOCH: tests/test_build_reuse.py shows it), and
    `gate --push` refuses a content tag whose digest moved.  So the registry's copy is
    reused; where it cannot be asked, one line says so and the build goes on."""
    name = tag.rsplit(":", 1)[1]
    if target is None:
        # Progress, not a warning: an offline or first build has nothing to reuse.
        Progress("build").note(f"content tag {name} looked for in the local engine only; "
                               "--reuse-from REGISTRY reuses a pushed copy (a rebuild gets "
                               "a new digest, which gate --push refuses for a pushed tag)")
        return None
    from buildkit import ecr

    session = None
    try:
        session = ecr.login(engine.client, ecr.client(target.region), target)
        found = ecr.remote_manifest(session, name)
        if found is None:
            return None
        pulled = session.run("pull", target.ref(name), timeout=3600)
        if pulled.returncode != 0:
            last = (pulled.stderr.strip().splitlines() or ["?"])[-1]
            raise CliError(f"docker pull {target.ref(name)} failed: {last}", Exit.FAIL)
        engine.run("tag", target.ref(name), tag)
        print(f"efakit: {tag} is in the registry ({found[0]}): pulled, not rebuilt",
              file=sys.stderr)
        return target.ref(name)
    except (CliError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"efakit: cannot check the registry for {target.ref(name)} ({exc}); building: "
              "gate --push refuses it if the registry has this tag with another digest",
              file=sys.stderr)
        return None
    finally:
        if session is not None:
            session.close()


def _finish(engine: Engine, spec: Spec, variant: str, out_dir: Path, tag: str, repo: str,
            aliases: list[str], log: Path, context: Path) -> BuildResult:
    """Apply alias tags and record the build where make gate finds it."""
    for alias in aliases:
        engine.run("tag", tag, alias if ":" in alias else f"{repo}:{alias}")
    tags = [tag] + [a if ":" in a else f"{repo}:{a}" for a in aliases]
    result = BuildResult(image_id(engine, tag), tags, log, context)
    record = out_dir / "last-build.json"
    record.write_text(json.dumps({**result.as_dict(), "framework": spec.framework,
                                  "variant": variant, "profile": spec.profile}, indent=2) + "\n")
    return result


def registry_cache_args(engine: Engine, cache_repo: str | None, variant: str) -> list[str]:
    """BuildKit registry cache in a repository of its own (buildx only; untested here:
    this machine has neither buildx nor a registry BuildKit could export to)."""
    if not cache_repo:
        return []
    if not engine.buildx:
        raise CliError("--cache-repo needs docker buildx (the built-in BuildKit of "
                       f"{engine.client} cannot export a registry cache)", Exit.NO_ENGINE)
    ref = f"{cache_repo}:buildcache-{variant}"
    return ["--cache-from", f"type=registry,ref={ref}",
            "--cache-to", f"type=registry,ref={ref},mode=max"]


def _failure(lines: list[str], log: Path) -> str:
    """Name the failed step and show its last lines."""
    steps = {m.group(1): m.group(0) for m in map(STEP_RE.match, lines) if m}
    failed = next((m for m in map(ERROR_RE.match, reversed(lines)) if m), None)
    step = steps.get(failed.group(1), "?") if failed else "?"
    step_id = failed.group(1) if failed else None
    tail = [ln for ln in lines if step_id and ln.startswith(f"#{step_id} ")][-LOG_TAIL:] \
        or lines[-LOG_TAIL:]
    head = re.sub(r"^#\d+ ", "", step)
    return (f"build failed at {head}\n" + "\n".join(tail) + f"\n(full log: {log}; no tag "
            "was applied)")
