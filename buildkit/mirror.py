"""The artifact mirror: the same files a build would download, checked by the same pins.

Air-gapped builds (and every test here) read artifacts from a local directory
instead of the network.  Downloads named in the spec keep their pin: the
publisher's sha256 or sha512 of the file, or for a source archive its git
content tree id, which is the same for GitHub's tag archive and a `git archive`
of the same tag, so one pin serves the mirror and the download alike.  Python
wheels get a pip requirements file per purpose with `--hash` on every line, so
pip itself refuses a tampered wheel.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from buildkit.paths import REPO_ROOT
from buildkit.progress import Progress
from buildkit.spec import PIN_KINDS, Spec
from verify.boundary.archives import ArchiveError, tree_id
from verify.boundary.files import write_atomic
from verify.exitcodes import Exit

WHEELS = "wheels"
# The builder's toolchain wheels live apart: a build step binds only its own
# directory, so a change among the image's wheels does not recompile the stack.
WHEEL_DIRS = {"builder": "toolchain"}
# What each install step of the offline profile needs from the package index.
WHEEL_SETS = {
    "base": "torch=={torch} nvidia-nccl-cu{cuda_major}=={nccl}",
    "builder": "{builder}",
    "verifier": "click PyYAML nvidia-ml-py",
    "sagemaker": "{sagemaker}",
}
# The air-gapped source mirror beside a checkout (shared/artifacts/SOURCES.md);
# EFAKIT_SOURCES names another.  Without one, sources are downloaded.
DEFAULT_SOURCES = REPO_ROOT.parent / "shared" / "artifacts" / "sources"
PYTHON_TAG = ("3.11", "cp311")  # Debian bookworm's python3


class MirrorError(RuntimeError):
    """The mirror cannot be filled (a download failed, pip failed): exit 1."""

    code = Exit.FAIL


class MirrorRefused(MirrorError):
    """An input efakit refuses: an artifact that does not match its pin, a local source
    mirror entry that is not a regular file (README: one line, exit 2)."""

    code = Exit.USAGE


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        raise MirrorError(f"pip {args[0]} failed: {tail}")


def _requirement_line(wheel: Path) -> str:
    return f"{_requirement_line_unhashed(wheel)} --hash=sha256:{sha256_of(wheel)}"


def fill_wheels(spec: Spec, mirror: Path) -> list[Path]:
    """Download (and, for sdists, build) every wheel the offline images install.
    SIGTERM ends it through the clean-up of its temporary files (_terminated_as_exit)."""
    with _terminated_as_exit():
        return _fill_wheels(spec, mirror)


def _fill_wheels(spec: Spec, mirror: Path) -> list[Path]:
    written = []
    progress = Progress("fetch-artifacts")
    values = {"torch": spec.base.get("torch"),
              "nccl": (spec.components.get("nccl") or {}).get("version"),
              "cuda_major": str(spec.base.get("cuda") or "12").split(".")[0],
              "builder": " ".join(spec.base.get("builder_wheels") or []),
              "sagemaker": " ".join(spec.packages("sagemaker"))}
    for name, template in WHEEL_SETS.items():
        if not template.format(**values).strip():
            continue
        wheels = mirror / WHEEL_DIRS.get(name, WHEELS)
        wheels.mkdir(parents=True, exist_ok=True)
        progress.status(f"wheels for {name}: pip download {template.format(**values)}")
        with tempfile.TemporaryDirectory() as tmp:
            staging = Path(tmp)
            _pip("download", "--quiet", "--dest", str(staging), *template.format(**values).split())
            for sdist in sorted(staging.glob("*.tar.gz")):
                _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(staging), str(sdist))
                sdist.unlink()
            lines = []
            for wheel in sorted(staging.glob("*.whl")):
                target = wheels / wheel.name
                if not target.is_file() or sha256_of(target) != sha256_of(wheel):
                    _copy_in(wheel, target)
                lines.append(_requirement_line(target))
        progress.note(f"wheels for {name}: {len(lines)} pinned in {wheels}")
        requirements = wheels / f"requirements-{name}.txt"
        write_atomic(requirements,
                     f"# {name}: pinned by efakit fetch-artifacts; pip --require-hashes "
                     "checks each\n" + "\n".join(lines) + "\n")
        written.append(requirements)
    return written


def _copy_in(source: Path, target: Path) -> None:
    """`source` copied to `target` through a temporary file of target's directory and
    renamed over it whole: a kill leaves no half-written file under the artifact's
    name (which a later run trusted, and pinned by its digest)."""
    fd, partial = _new_partial(target.parent, target.name)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as handle:
            os.fchmod(out.fileno(), 0o644)
            shutil.copyfileobj(handle, out, 1 << 20)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def pin_problem(name: str, comp: dict, path: Path, label: str | None = None) -> str | None:
    """None when `path` matches the component's pin; else one line naming the artifact
    (`label`, where `path` is a temporary copy of it), the expected and the actual
    digest."""
    label = label or path.name
    for kind in PIN_KINDS:
        want = comp.get(kind)
        if not want:
            continue
        if kind == "tree":
            try:
                have = tree_id(path)
            except ArchiveError as exc:
                if exc.kind == "refused":
                    return f"artifact {label} ({name}): refused, its tree not computed " \
                           f"(expected {want}): {exc}"
                have = f"unreadable ({exc})"
        else:
            digest = hashlib.new(kind)
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            have = digest.hexdigest()
        if have != want:
            return f"artifact {label} ({name}): {kind} mismatch: expected {want}, " \
                   f"actual {have}"
        return None
    return None


def artifact_name(comp: dict) -> str:
    return comp.get("file") or comp["url"].rsplit("/", 1)[-1]


def sources_dir() -> Path | None:
    """The local source mirror, if there is one: EFAKIT_SOURCES, which must then be a
    directory (a typo must not turn an air-gapped fetch into downloads), else the
    default beside the checkout where it exists."""
    named = os.environ.get("EFAKIT_SOURCES")
    if named:
        if not Path(named).is_dir():
            raise MirrorRefused(f"EFAKIT_SOURCES={named}: not a directory")
        return Path(named)
    return DEFAULT_SOURCES if DEFAULT_SOURCES.is_dir() else None


def fetch_downloads(spec: Spec, mirror: Path, update_pins: bool) -> dict[str, str]:
    """Bring each pinned download of the spec into the mirror (from the local source mirror
    where it has the file, else from its URL) and check its pin, or compute the sha256.

    Each copy is written to a temporary file of its own in the mirror and renamed over
    the artifact only once its pin matched; it is removed on every other way out,
    SIGTERM included (SIGKILL leaves it, under a name no later run opens)."""
    computed = {}
    local = sources_dir()
    if local is not None and (mirror.resolve() == local.resolve()
                              or local.resolve() in mirror.resolve().parents):
        # the output would rewrite the input in place (attack-2 SA-10): never an input
        raise MirrorRefused(f"artifact mirror {mirror} is the source mirror {local} or "
                            "inside it (EFAKIT_SOURCES); an output may not replace an input")
    _make_mirror(mirror)
    progress = Progress("fetch-artifacts")
    with _terminated_as_exit():
        for name, comp in spec.components.items():
            url = (comp or {}).get("url")
            if not url:
                continue
            target = mirror / artifact_name(comp)
            source = _open_source(local, target.name)
            try:
                fd, partial = _new_partial(mirror, target.name)
            except MirrorError:
                if source is not None:
                    os.close(source[0])
                raise
            try:
                where = _fetch(fd, name, url, source, target.name, progress)
                problem = None if update_pins else pin_problem(
                    name, comp, partial, f"{target.name} from {where}")
                if problem:
                    raise MirrorRefused(problem)
                os.replace(partial, target)  # renames over a link at `target`, never through
            finally:
                partial.unlink(missing_ok=True)
            computed[name] = sha256_of(target)
            progress.note(f"{target.name}: {target.stat().st_size / 1e6:.1f} MB, "
                          + ("sha256 computed" if update_pins else "pin checked"))
    progress.done()
    return computed


def _make_mirror(mirror: Path) -> None:
    """The mirror directory, created where missing; a file at its path is refused as
    such (mkdir's own word was "File exists": attack-1 W-4)."""
    if (mirror.exists() or mirror.is_symlink()) and not mirror.is_dir():
        raise MirrorRefused(f"artifact mirror {mirror}: exists and is not a directory")
    try:
        mirror.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MirrorRefused(f"cannot create the artifact mirror {mirror}: "
                            f"{exc.strerror}") from None


@contextlib.contextmanager
def _terminated_as_exit():
    """SIGTERM raises SystemExit (130) while artifacts are fetched, so the `finally`
    that removes a temporary copy runs (the default action ends the process at once)."""
    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(int(Exit.INTERRUPTED))

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: signals are not ours to take
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _open_source(local: Path | None, file: str) -> tuple[int, Path] | None:
    """A descriptor on the local source mirror's copy of `file`; None only when there is
    no entry of that name (then, and only then, the artifact is downloaded).

    An entry that is there but is no regular file (a FIFO, a device, a directory, a
    link to /dev/zero or to nothing) is refused: skipping it would silently download
    what an air-gapped setup meant to provide.  Opened O_NONBLOCK, checked by fstat,
    so a FIFO never blocks."""
    if local is None:
        return None
    path = local / file
    if not os.path.lexists(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise MirrorRefused(f"{path}: cannot read the local source mirror's copy: "
                            f"{exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) \
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file"
        raise MirrorRefused(f"{path}: is {kind}, not a regular file; the local source "
                            "mirror must hold the artifact itself (not downloading instead)")
    return fd, path


def _new_partial(mirror: Path, file: str) -> tuple[int, Path]:
    """A new temporary file of the mirror for the artifact's untrusted bytes.

    mkstemp opens it O_CREAT|O_EXCL|O_NOFOLLOW under a name of its own: a file or
    link already in the mirror (a `.part` symlink left to lead the write elsewhere, or
    one a killed run left) is never opened, let alone written through."""
    try:
        fd, tmp = tempfile.mkstemp(dir=mirror, prefix=f".{file}.", suffix=".part")
    except OSError as exc:
        raise MirrorError(f"cannot write to the artifact mirror {mirror}: {exc.strerror}") \
            from None
    return fd, Path(tmp)


def _fetch(fd: int, name: str, url: str, source: tuple[int, Path] | None, file: str,
           progress: Progress) -> str:
    """Write the artifact's bytes to `fd` from the local source mirror's copy (`source`,
    its descriptor and path), or else from `url`; both descriptors are closed after.
    Returns where the bytes came from."""
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o644)  # the build context's reader, as a plain copy
        if source is not None:
            progress.note(f"{file}: from the local source mirror {source[1].parent}")
            try:
                with os.fdopen(source[0], "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
            except OSError as exc:
                raise MirrorError(f"cannot copy {source[1]}: {exc.strerror or exc}") from None
            return str(source[1])
        progress.note(f"{file}: not in a local source mirror; downloading {url}")
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                _copy_with_progress(resp, out, file, progress)
        except (urllib.error.URLError, OSError) as exc:
            raise MirrorError(f"cannot download {name} from {url}: {exc} (no internet here, "
                              "and no copy in a local source mirror: set EFAKIT_SOURCES)") \
                from None
        return url


def _copy_with_progress(resp, out, name: str, progress: Progress) -> None:
    total = int(resp.headers.get("Content-Length") or 0) or None
    done = 0
    while block := resp.read(1 << 20):
        out.write(block)
        done += len(block)
        progress.transfer(name, done, total)


def _requirement_key(line: str) -> str:
    return line.split(" ", 1)[0].lower().replace("_", "-")


def check_wheels(mirror: Path) -> list[str]:
    """Every wheel a requirements file pins must be present with that sha256."""
    problems = []
    for directory in sorted({WHEELS, *WHEEL_DIRS.values()}):
        problems += _check_wheel_dir(mirror / directory)
    return problems


def _check_wheel_dir(wheels: Path) -> list[str]:
    by_key = {_requirement_key(_requirement_line_unhashed(w)): w for w in wheels.glob("*.whl")}
    problems = []
    for requirements in sorted(wheels.glob("requirements-*.txt")):
        for line in requirements.read_text(encoding="utf-8").splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, want = line.partition(" --hash=sha256:")
            wheel = by_key.get(_requirement_key(key))
            if wheel is None:
                problems.append(f"artifact {key}: missing from {wheels}")
            elif (have := sha256_of(wheel)) != want.strip():
                problems.append(f"artifact {wheel.name}: sha256 mismatch: expected "
                                f"{want.strip()}, actual {have}")
    return problems


def _requirement_line_unhashed(wheel: Path) -> str:
    name, version = wheel.name.split("-")[:2]
    return f"{name.replace('_', '-')}=={version}"


def check_mirror(spec: Spec, mirror: Path) -> list[str]:
    """Problems with a mirror before a build uses it: missing or tampered files."""
    if not mirror.is_dir():
        return [f"artifact mirror {mirror} does not exist (run: efakit fetch-artifacts)"]
    problems = check_wheels(mirror)
    for name, comp in spec.components.items():
        if not (comp or {}).get("url"):
            continue
        target = mirror / artifact_name(comp)
        if not target.is_file():
            pin = next((f"{k} {comp[k]}" for k in PIN_KINDS if comp.get(k)),
                       "unpinned")
            problems.append(f"artifact {target.name} ({name}): missing from the mirror "
                            f"{mirror} (expected {pin}; run: efakit fetch-artifacts)")
        elif problem := pin_problem(name, comp, target):
            problems.append(problem)
    return problems


def write_pins(spec_path: Path, computed: dict[str, tuple[str, str]], today: str) -> list[str]:
    """Write computed digests (name -> (sha256, url)) into the spec's top-level components.

    A text edit, not a YAML round trip, so the spec's comments and order survive:
    `sha256: null` becomes the digest, the `reason` gives way to a provenance line.
    """
    lines = spec_path.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = []
    section = None
    current = None
    out: list[str] = []
    for line in lines:
        stripped = line.rstrip("\n")
        if stripped and not stripped.startswith(" "):
            section = stripped.rstrip(":")
            current = None
        elif section == "components" and stripped.startswith("  ") \
                and not stripped.startswith("   ") and stripped.endswith(":"):
            current = stripped.strip().rstrip(":")
        if section == "components" and current in computed:
            digest, url = computed[current]
            if stripped.startswith("    sha256:"):
                out.append(f"    sha256: {digest}\n")
                out.append(f'    provenance: "computed by efakit fetch-artifacts --update-pins '
                           f'from {url} on {today}"\n')
                changed.append(current)
                continue
            if stripped.startswith(("    reason:", "    provenance:")):
                continue
        out.append(line)
    write_atomic(spec_path, "".join(out))
    return changed
