"""Base facts: what each base image contains that the templates depend on.

The production templates were once written against what the bases were assumed to
hold (a conda Python, a CUDA toolkit dir, fresh apt lists), and none of the three
would have built.  The facts now live in one table with a source per fact
(images/base-facts.yaml); render decides from them, `efakit lint` refuses a rendered
Dockerfile that contradicts them (buildkit/lintrules.py), and `make base-facts`
compares them with the real images where a registry is reachable (`python -m
buildkit.basefacts check`), failing with the difference.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from buildkit.paths import IMAGES_DIR

FACTS_FILE = IMAGES_DIR / "base-facts.yaml"
FACT_KEYS = ("python", "pip_externally_managed", "cuda", "apt_lists", "held_packages",
             "ngc_marker", "hpcx", "opal_prefix", "nccl")
CUDA_LAYOUTS = ("toolkit", "runtime", "wheels", "none")
NCCL_SOURCES = ("wheel", "system", "none")
CONFIDENCE = ("certain", "near-certain", "likely", "unverified")
NGC_MARKER = "/opt/nvidia/nvidia_entrypoint.sh"


class FactsError(ValueError):
    """The facts table is malformed, or has no row for an image."""


@dataclass(frozen=True)
class BaseFacts:
    """One row: the facts of the images it names."""

    name: str
    images: tuple[str, ...]
    stand_in: str | None
    builder: str | None
    facts: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.facts[key]

    @property
    def python(self) -> str | None:
        return self.facts["python"]

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self.facts["held_packages"])


def _check_fact(where: str, key: str, value: Any) -> None:
    ok = {
        "python": value is None or (isinstance(value, str) and value.startswith("/")),
        "pip_externally_managed": isinstance(value, bool),
        "cuda": value in CUDA_LAYOUTS,
        "apt_lists": isinstance(value, bool),
        "held_packages": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "ngc_marker": isinstance(value, bool),
        "hpcx": value is None or (isinstance(value, str) and value.startswith("/")),
        "opal_prefix": value is None or isinstance(value, str),
        "nccl": value in NCCL_SOURCES,
    }[key]
    if not ok:
        raise FactsError(f"{where}.{key}: value {value!r} is not valid for this fact")


def parse(raw: Any, where: str) -> dict[str, BaseFacts]:
    """Validate a facts table: every row names its images and every fact, each with a
    value, a confidence, a reason and a source."""
    if not isinstance(raw, dict) or raw.get("schema_version") != 1 \
            or not isinstance(raw.get("bases"), dict):
        raise FactsError(f"{where}: expected schema_version: 1 and a bases mapping")
    rows: dict[str, BaseFacts] = {}
    for name, row in raw["bases"].items():
        key = f"{where}: bases.{name}"
        if not isinstance(row, dict) or not row.get("images") or "facts" not in row:
            raise FactsError(f"{key}: needs images and facts")
        facts = row["facts"] or {}
        missing = [k for k in FACT_KEYS if k not in facts]
        extra = [k for k in facts if k not in FACT_KEYS]
        if missing or extra:
            raise FactsError(f"{key}.facts: missing {missing or 'none'}, unknown "
                             f"{extra or 'none'}")
        values = {}
        for fact, entry in facts.items():
            if not isinstance(entry, dict) or not all(entry.get(k) for k in ("reason", "source")) \
                    or entry.get("confidence") not in CONFIDENCE or "value" not in entry:
                raise FactsError(f"{key}.facts.{fact}: needs value, confidence "
                                 f"({'|'.join(CONFIDENCE)}), reason and source")
            _check_fact(f"{key}.facts", fact, entry["value"])
            values[fact] = entry["value"]
        rows[name] = BaseFacts(name, tuple(row["images"]), row.get("stand_in"),
                               row.get("builder"), values)
    for row in rows.values():
        if row.builder is not None and row.builder not in rows:
            raise FactsError(f"{where}: bases.{row.name}.builder: no row {row.builder!r}")
    return rows


@cache
def table(path: Path = FACTS_FILE) -> dict[str, BaseFacts]:
    from verify.tables import TableError, load_yaml_file

    try:
        return parse(load_yaml_file(path), str(path))
    except TableError as exc:
        raise FactsError(str(exc)) from None


def strip_digest(ref: str) -> str:
    """`name:tag@sha256:...` -> `name:tag`: a row describes a tag, the digest one build of it."""
    return ref.split("@", 1)[0]


def for_image(ref: str, rows: dict[str, BaseFacts] | None = None) -> BaseFacts:
    """The row describing image `ref` (by name:tag, or the row's stand-in), or FactsError."""
    rows = table() if rows is None else rows
    name = strip_digest(ref)
    for row in rows.values():
        if name in row.images or name == row.stand_in:
            return row
    raise FactsError(f"no base facts for image {name}: add a row to {FACTS_FILE.name} "
                     "(python, pip, CUDA layout, apt lists, held packages, NGC marker, "
                     "HPC-X, NCCL), each with its source")


# What `make base-facts` runs in an image: one `fact=value` line per fact.
PROBE_SCRIPT = Path(__file__).with_name("base-probe.sh")


def observed(output: str) -> dict[str, Any]:
    """The facts the probe printed, typed as the table types them."""
    seen: dict[str, Any] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep or key not in FACT_KEYS:
            continue
        if key in ("pip_externally_managed", "apt_lists", "ngc_marker"):
            seen[key] = value == "true"
        elif key == "held_packages":
            seen[key] = sorted(value.split())
        else:
            seen[key] = value or None
    return seen


def differences(row: BaseFacts, seen: dict[str, Any]) -> list[str]:
    """Each fact the image contradicts, as `fact: table says X, the image has Y`.  A fact
    the probe could not observe (pip's state where there is no python) is not compared."""
    out = []
    for key in FACT_KEYS:
        if key not in seen:
            continue
        want = sorted(row[key]) if key == "held_packages" else row[key]
        if seen[key] != want:
            out.append(f"{key}: table says {want!r}, the image has {seen[key]!r}")
    return out


def probe(client: str, ref: str, timeout: int = 600) -> dict[str, Any]:
    """Run the probe in `ref` (pulled if missing; nothing else is run) and read it back."""
    script = PROBE_SCRIPT.read_text(encoding="utf-8")
    proc = subprocess.run([client, "run", "--rm", "--pull", "missing", "--entrypoint",
                           "/bin/sh", ref, "-c", script], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise FactsError(f"probe of {ref} failed: {proc.stderr.strip()[-300:]}")
    return observed(proc.stdout)


def _targets(spec_file: Path, stand_ins: bool, rows: dict[str, BaseFacts],
             only: list[str]) -> list[tuple[str, BaseFacts]]:
    """(image to probe, its row) for every base and builder the spec names."""
    from buildkit.spec import load_spec
    from verify.tables import load_yaml_file

    refs: list[str] = []
    for name in load_yaml_file(spec_file)["base"]["choices"]:
        choice = load_spec(spec_file, base=name).base
        refs += [choice["image"], *([choice["builder_image"]] if "builder_image" in choice
                                    else [])]
    targets, seen = [], set()
    for ref in refs:
        row = for_image(ref, rows)
        if row.name in seen or (only and row.name not in only):
            continue
        seen.add(row.name)
        if stand_ins and not row.stand_in:
            raise FactsError(f"bases.{row.name} has no stand_in")
        targets.append((row.stand_in if stand_ins else ref, row))
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m buildkit.basefacts",
        description="Compare images/base-facts.yaml with the real base images (make base-facts).")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="probe every base and builder of the spec")
    check.add_argument("--spec", type=Path, default=IMAGES_DIR / "pytorch.yaml")
    check.add_argument("--facts", type=Path, default=FACTS_FILE)
    check.add_argument("--stand-ins", action="store_true",
                       help="probe each row's local stand-in instead of the registry image")
    check.add_argument("--base", action="append", default=[], help="only this row (repeatable)")
    check.add_argument("--docker", default="docker", help="docker client (default: docker)")
    args = parser.parse_args(argv)
    try:
        rows = table(args.facts)
        failed = False
        for ref, row in _targets(args.spec, args.stand_ins, rows, args.base):
            diff = differences(row, probe(args.docker, ref))
            failed |= bool(diff)
            print(f"{row.name} ({ref}): " + ("matches the table" if not diff else
                                             "DIFFERS: " + "; ".join(diff)))
    except (FactsError, OSError, subprocess.SubprocessError) as exc:
        print(f"base-facts: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a spec error: one line, never a traceback
        print(f"base-facts: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if failed:
        print(f"base-facts: the images differ from {args.facts}: fix the table (with the "
              "source) and re-render", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
