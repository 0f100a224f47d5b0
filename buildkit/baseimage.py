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
from pathlib import Path

from buildkit.engine import Engine, image_exists
from buildkit.mirror import WHEELS
from verify.cliutil import CliError
from verify.exitcodes import Exit

DEBIAN_MIRROR = "http://deb.debian.org/debian"
PACKAGES = "python3,python3-pip,python3-venv,ca-certificates"


def _run(cmd: list[str], what: str, timeout: int = 900) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise CliError(f"{what} failed:\n{tail}", Exit.FAIL)


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
    with tempfile.TemporaryDirectory(prefix="efakit-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
              str(root), DEBIAN_MIRROR], "debootstrap bookworm")
        staged = root / "tmp" / "wheels"
        shutil.copytree(mirror / WHEELS, staged)
        _run(["chroot", str(root), "python3", "-m", "pip", "install", "--no-cache-dir",
              "--break-system-packages", "--no-index", "--find-links", "/tmp/wheels",
              "--require-hashes", "-r", "/tmp/wheels/requirements-base.txt"],
             "pip install of torch and NCCL into the base")
        shutil.rmtree(staged)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        proc = subprocess.run([engine.client, "import", "--change",
                               'ENV PIP_BREAK_SYSTEM_PACKAGES=1', "--change",
                               'CMD ["/bin/bash"]', str(archive), ref],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise CliError(f"docker import failed: {proc.stderr.strip()[-400:]}", Exit.FAIL)
    return f"built {ref}"
