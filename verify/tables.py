"""Load the shared YAML data tables that ship with the verifier.

The tables (instance profiles, env rules, log patterns, diagnoses, default
policy) live here rather than in `buildkit` because both sides need them and
the verifier must work alone inside an image.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

# libyaml's loader where PyYAML was built with it (the image's is): the same safe
# subset, several times faster, and the tables are read on every run.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TableError(ValueError):
    """A data file that cannot be read."""


def load_yaml_file(path: Path | str) -> Any:
    """Read a YAML file, turning every failure into one TableError line."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=SAFE_LOADER)
    except FileNotFoundError:
        raise TableError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TableError(f"{path}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError as exc:
        raise TableError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TableError(f"{path}{where}: invalid YAML: {problem}") from None


@cache
def load_table(name: str) -> Any:
    """Load `verify/data/<name>.yaml` (cached: tables never change at run time)."""
    ref = resources.files("verify").joinpath("data", f"{name}.yaml")
    with resources.as_file(ref) as path:
        return load_yaml_file(path)

