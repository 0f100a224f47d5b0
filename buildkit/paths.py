"""Where the repository's templates and specs are.

efakit runs from a checkout (make targets, CI); EFAKIT_HOME points elsewhere
when the package is installed apart from its templates.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(os.environ.get("EFAKIT_HOME", Path(__file__).resolve().parents[1]))
TEMPLATES_DIR = REPO_ROOT / "templates"
IMAGES_DIR = REPO_ROOT / "images"
