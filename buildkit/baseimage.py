"""The offline profile's base image, made locally: no registry is reachable here.

debootstrap a Debian bookworm root, install the mirror's torch (CPU) and
nvidia-nccl-cu12 wheels into it with pip --require-hashes, and import it into
Docker.  Production profiles pull their bases from registries instead.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

from buildkit.engine import Engine, image_exists
from buildkit.mirror import WHEELS
from buildkit.progress import Progress
from verify.cliutil import CliError
from verify.exitcodes import Exit

DEBIAN_MIRROR = "http://deb.debian.org/debian"
PACKAGES = "python3,python3-pip,python3-venv,ca-certificates"


def _stage(line: str) -> str | None:
    """debootstrap's stage from one of its `I: ...` lines (per-package lines fold into one)."""
    if not line.startswith("I: "):
        return None
    words = line[3:].split()
    # 'Retrieving libc6 2.36-9', 'Validating libc6 2.36-9': one package each, alternating
    # package by package, so both are one stage (a line per package would flood a CI log)
    if words[:1] in (["Retrieving"], ["Validating"]) and len(words) == 3:
        return "debootstrap: retrieving and validating packages"
    # 'Extracting libc6...', 'Unpacking libc6...', 'Configuring libc6...'
    if words[:1] in (["Extracting"], ["Unpacking"], ["Configuring"]) and len(words) == 2:
        return f"debootstrap: {words[0].lower()} packages"
    return f"debootstrap: {line[3:].strip().rstrip('.')}"


def _run(cmd: list[str], what: str, progress: Progress, timeout: int = 900) -> None:
    """Run a long step, its stages shown as progress, its last lines in the error."""
    progress.status(what)
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as proc:
        watchdog = threading.Timer(timeout, proc.kill)  # a hung step, silent or not, ends
        watchdog.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-8:]
            stage = _stage(line)
            if stage:
                progress.status(stage)
        watchdog.cancel()
    if proc.returncode != 0:
        raise CliError(f"{what} failed:\n" + "\n".join(tail), Exit.FAIL)


def build_base(engine: Engine, ref: str, mirror: Path, force: bool = False) -> str:
    """Make `ref` (e.g. efakit/base:bookworm) unless it exists; return what was done."""
    if image_exists(engine, ref) and not force:
        return f"{ref} exists (use --force to rebuild)"
    if shutil.which("debootstrap") is None:
        raise CliError("debootstrap not found: apt-get install debootstrap", Exit.NO_ENGINE)
    requirements = mirror / WHEELS / "requirements-base.txt"
    if not requirements.exists():
        raise CliError(f"{requirements} missing: run efakit fetch-artifacts pytorch "
                       f"{mirror} --profile offline first")
    progress = Progress("base-image")
    progress.note(f"making {ref}: debootstrap bookworm, the mirror's wheels, docker import")
    with tempfile.TemporaryDirectory(prefix="efakit-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
              str(root), DEBIAN_MIRROR], "debootstrap bookworm", progress)
        staged = root / "tmp" / "wheels"
        shutil.copytree(mirror / WHEELS, staged)
        _run(["chroot", str(root), "python3", "-m", "pip", "install", "--no-cache-dir",
              "--break-system-packages", "--no-index", "--find-links", "/tmp/wheels",
              "--require-hashes", "-r", "/tmp/wheels/requirements-base.txt"],
             "pip install of torch and NCCL into the base", progress)
        shutil.rmtree(staged)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        archive = Path(tmp) / "rootfs.tar"
        progress.status("docker import of the root")
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        proc = subprocess.run([engine.client, "import", "--change",
                               'ENV PIP_BREAK_SYSTEM_PACKAGES=1', "--change",
                               'CMD ["/bin/bash"]', str(archive), ref],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise CliError(f"docker import failed: {proc.stderr.strip()[-400:]}", Exit.FAIL)
    progress.done()
    return f"built {ref}"
