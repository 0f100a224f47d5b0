"""Build benchmarks, as ratios measured in one run (machines are noisy).

1. Cold build of the offline ec2 image (build cache pruned) against a warm
   rebuild after a change to the env rules alone: target warm <= 10% of cold,
   which holds only if the layers before the verifier are reused.
2. Bytes the image adds over its base (sum of its own layers) against the
   bytes its final filesystem adds (du of the running image minus the base):
   target <= 1.3x.  Tarballs, apt lists or object files written in one layer
   and deleted in a later one show up here as excess.

Needs Docker, the mirror and the base image: `make base-image` first.

    python bench/build.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
BASE = "efakit/base:bookworm"
REPO = "efakit/bench"


def sh(*cmd: str, env: dict | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def build(home: Path, out: Path) -> float:
    env = {**os.environ, "EFAKIT_HOME": str(home)}
    start = time.perf_counter()
    sh("efakit", "build", "pytorch", "--profile", "offline", "--variant", "ec2",
       "--artifacts", str(ROOT / "out" / "mirror"), "--tag", "bench", "--out", str(out),
       "--force", env=env)
    return time.perf_counter() - start


def fs_bytes(image: str) -> int:
    out = sh(DOCKER, "run", "--rm", "--entrypoint", "du", image, "-sxb", "/")
    return int(out.split()[0])


def layer_bytes(image: str) -> int:
    return int(json.loads(sh(DOCKER, "image", "inspect", "--format", "{{json .Size}}", image)))


def main() -> int:
    if subprocess.run([DOCKER, "image", "inspect", BASE], capture_output=True).returncode:
        sys.exit(f"{BASE} missing: run make base-image first")
    with tempfile.TemporaryDirectory(prefix="efakit-bench-") as tmp:
        home = Path(tmp) / "home"
        for name in ("templates", "images", "verify", "buildkit"):
            shutil.copytree(ROOT / name, home / name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md", ".hadolint.yaml"):
            shutil.copy(ROOT / name, home / name)
        sh(DOCKER, "builder", "prune", "-af")
        cold = build(home, Path(tmp) / "cold")
        rules = home / "verify" / "data" / "env_rules.yaml"
        rules.write_text(rules.read_text() + "\n# benchmark: an env-rules-only change\n")
        warm = build(home, Path(tmp) / "warm")
        image = f"{REPO}:bench"
        sh(DOCKER, "tag", "efakit/pytorch:bench", image)
        added_layers = layer_bytes(image) - layer_bytes(BASE)
        added_fs = fs_bytes(image) - fs_bytes(BASE)
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'cold build (s)':<44}{cold:>12.1f}")
    print(f"{'warm rebuild after env-rules change (s)':<44}{warm:>12.1f}")
    print(f"{'warm / cold (target <= 0.10)':<44}{warm / cold:>12.2f}")
    print(f"{'layers added over base (MB)':<44}{added_layers / 1e6:>12.0f}")
    print(f"{'filesystem added over base (MB)':<44}{added_fs / 1e6:>12.0f}")
    print(f"{'layers / filesystem (target <= 1.3)':<44}{added_layers / added_fs:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
