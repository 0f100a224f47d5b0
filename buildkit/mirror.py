"""The artifact mirror: the same files a build would download, checked by the same digests.

Air-gapped builds (and every test here) read artifacts from a local directory
instead of the network.  Downloads named in the spec keep their pinned sha256;
Python wheels get a pip requirements file per purpose with `--hash` on every
line, so pip itself refuses a tampered wheel.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from buildkit.spec import Spec

WHEELS = "wheels"
# What each install step of the offline profile needs from the package index.
WHEEL_SETS = {
    "base": "torch=={torch} nvidia-nccl-cu12=={nccl}",
    "verifier": "click PyYAML nvidia-ml-py",
    "sagemaker": "sagemaker-training mpi4py",
}
PYTHON_TAG = ("3.11", "cp311")  # Debian bookworm's python3


class MirrorError(RuntimeError):
    """The mirror cannot be filled or does not match the spec."""


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
    """Download (and, for sdists, build) every wheel the offline images install."""
    wheels = mirror / WHEELS
    wheels.mkdir(parents=True, exist_ok=True)
    written = []
    values = {"torch": spec.base.get("torch"), "nccl": (spec.components.get("nccl") or {})
              .get("version")}
    for name, template in WHEEL_SETS.items():
        with tempfile.TemporaryDirectory() as tmp:
            staging = Path(tmp)
            _pip("download", "--quiet", "--dest", str(staging), *template.format(**values).split())
            for sdist in sorted(staging.glob("*.tar.gz")):
                _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(staging), str(sdist))
                sdist.unlink()
            lines = []
            for wheel in sorted(staging.glob("*.whl")):
                target = wheels / wheel.name
                if not target.exists():
                    shutil.copy2(wheel, target)
                lines.append(_requirement_line(target))
        requirements = wheels / f"requirements-{name}.txt"
        requirements.write_text(
            f"# {name}: pinned by efakit fetch-artifacts; pip --require-hashes checks each\n"
            + "\n".join(lines) + "\n", encoding="utf-8")
        written.append(requirements)
    return written


def fetch_downloads(spec: Spec, mirror: Path, update_pins: bool) -> dict[str, str]:
    """Download each pinned URL of the spec into the mirror and check (or compute) digests."""
    computed = {}
    for name, comp in spec.components.items():
        url = (comp or {}).get("url")
        if not url:
            continue
        target = mirror / url.rsplit("/", 1)[-1]
        try:
            with urllib.request.urlopen(url, timeout=30) as resp, target.open("wb") as out:
                shutil.copyfileobj(resp, out)
        except (urllib.error.URLError, OSError) as exc:
            target.unlink(missing_ok=True)
            raise MirrorError(f"cannot download {name} from {url}: {exc} "
                              "(no internet here? build with the offline profile)") from None
        digest = sha256_of(target)
        if comp.get("sha256") and comp["sha256"] != digest and not update_pins:
            target.unlink()
            raise MirrorError(f"{name}: sha256 mismatch: expected {comp['sha256']}, "
                              f"actual {digest}")
        computed[name] = digest
    return computed


def _requirement_key(line: str) -> str:
    return line.split(" ", 1)[0].lower().replace("_", "-")


def check_wheels(mirror: Path) -> list[str]:
    """Every wheel a requirements file pins must be present with that sha256."""
    wheels = mirror / WHEELS
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
    """Problems with a mirror before a build uses it (missing or tampered files)."""
    if not mirror.is_dir():
        return [f"artifact mirror {mirror} does not exist (run: efakit fetch-artifacts)"]
    problems = check_wheels(mirror)
    for comp in spec.components.values():
        url, digest = (comp or {}).get("url"), (comp or {}).get("sha256")
        target = mirror / url.rsplit("/", 1)[-1] if url else None
        if target is not None and target.exists() and digest and sha256_of(target) != digest:
            problems.append(f"artifact {target.name}: sha256 mismatch: expected {digest}, "
                            f"actual {sha256_of(target)}")
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
    spec_path.write_text("".join(out), encoding="utf-8")
    return changed
