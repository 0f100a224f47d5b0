"""Mutation score of the Docker-free suite over the decisions users depend on.

Each row of bench/mutations.yaml is a one-line bug a user would feel (a check
that stops failing, a pin that stops being compared, a timeout that never
fires).  For each, this script copies the working tree to a temporary
directory (no ../shared beside it, as on a GitHub runner), applies the
mutation there, and runs the Docker-free suite against the copy with `-x`:
a failing test kills the mutant, a green suite lets it survive.  The tests
most likely to kill it run first, so a killed mutant costs seconds; a survivor
costs a whole suite run.  A mutant that outlives --timeout counts as killed
(the suite noticed: a timeout that never fires hangs it).

Why not mutmut: many tests run the CLIs as subprocesses (`python -m verify`),
which import the package from the checkout, not mutmut's trampolined copy, so
mutmut would report those tests' kills as survivors; and its hundreds of
generated mutants need hours on a 2-core machine.  A named list also says
what each bug means to a user.

    python bench/mutate.py [--only NAME ...] [--tests-from REV] [--timeout S]
                           [--no-baseline] [--keep]

--tests-from REV runs the tests of another revision (e.g. `main`) against the
current code: the "before" score of a change that adds tests.  It is a
benchmark, not a CI test: it takes long, and prints the kill rate and every
survivor with what it would cost a user.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "bench" / "mutations.yaml"
GOAL = 0.90
# The suite a GitHub pull request runs: no Docker, no GPU.
MARKERS = "not docker and not gpu"
# Switches that would turn a missing part into a failure (and so a false kill).
STRICT_VARS = ("CI", "EFAKIT_REQUIRE", "EFAKIT_REQUIRE_DOCKER")


@dataclass
class Mutation:
    name: str
    file: str
    old: str
    new: str
    why: str


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # killed | survived | not applied
    detail: str
    seconds: float


def load(only: list[str]) -> tuple[list[Mutation], dict[str, list[str]]]:
    """The mutations (all, or those named) and the test files to run first per module."""
    table = yaml.safe_load(TABLE.read_text())
    mutations = [Mutation(**row) for row in table["mutations"]]
    names = [m.name for m in mutations]
    if len(set(names)) != len(names):
        raise SystemExit("mutate: duplicate mutation names in bench/mutations.yaml")
    stale = [f"{m.name} ({m.file})" for m in mutations
             if (ROOT / m.file).read_text().count(m.old) != 1]
    if stale:  # code moved: the row would count as neither killed nor survived
        raise SystemExit("mutate: snippet not found exactly once, update bench/mutations.yaml: "
                         + ", ".join(stale))
    unknown = set(only) - set(names)
    if unknown:
        raise SystemExit(f"mutate: no mutation named {', '.join(sorted(unknown))}")
    return [m for m in mutations if not only or m.name in only], table.get("first") or {}


def copy_tree(dest: Path, tests_from: str | None) -> None:
    """The working tree (tracked and untracked files git does not ignore) into dest."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source = ROOT / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel, follow_symlinks=False)
    if tests_from:
        shutil.rmtree(dest / "tests")
        archive = subprocess.run(["git", "archive", tests_from, "tests"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def ordered_tests(tree: Path, module: str, first: list[str]) -> list[str]:
    """Every test file: the table's first ones for the module, then those naming the
    module most often."""
    stem = Path(module).stem
    files = sorted((tree / "tests").glob("test_*.py"))
    counts = {f: len(re.findall(rf"\b{re.escape(stem)}\b", f.read_text())) for f in files}
    rest = [str(f.relative_to(tree)) for f in sorted(files, key=lambda f: -counts[f])]
    head = [t for t in first if (tree / t).is_file()]
    return head + [t for t in rest if t not in head]


def suite(tree: Path, tests: list[str], timeout: float) -> tuple[int | None, str]:
    """Run pytest on the copy; (exit code or None on timeout, output)."""
    env = {k: v for k, v in os.environ.items() if k not in STRICT_VARS}
    env["PYTHONPATH"] = str(tree)  # the copy's packages, not the checkout's editable install
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
            "-m", MARKERS, *tests]
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=timeout)
        except BaseException:
            # pytest and the tests' children: its group, while its pid is still ours
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if not isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
                raise
            code = None
        out.seek(0)
        return code, out.read()


def first_failure(output: str) -> str:
    match = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
    if match:
        return match.group(1)
    return output.strip().splitlines()[-1] if output.strip() else "no output"


def run_one(tree: Path, mutation: Mutation, first: list[str], timeout: float,
            files: list[str]) -> Outcome:
    path = tree / mutation.file
    text = path.read_text()
    count = text.count(mutation.old)
    if count != 1:
        return Outcome(mutation, "not applied", f"snippet found {count} times", 0.0)
    start = time.monotonic()
    path.write_text(text.replace(mutation.old, mutation.new))
    try:
        tests = ordered_tests(tree, mutation.file, first)
        if files:
            tests = [t for t in tests if t in files]
        code, output = suite(tree, tests, timeout)
    finally:
        path.write_text(text)
    seconds = time.monotonic() - start
    if code is None:
        return Outcome(mutation, "killed", f"suite ran past {timeout:g} s", seconds)
    if code == 0:
        return Outcome(mutation, "survived", "the selected test files passed" if files else
                       "the Docker-free suite passed", seconds)
    if code == 5:
        return Outcome(mutation, "survived", "no tests collected", seconds)
    return Outcome(mutation, "killed", first_failure(output), seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    parser.add_argument("--tests-from", metavar="REV",
                        help="run the tests of this git revision (the 'before' score)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the unmutated run that proves the suite is green")
    parser.add_argument("--keep", action="store_true", help="keep the copy of the tree")
    parser.add_argument("--files", action="append", default=[], metavar="tests/test_x.py",
                        help="only these test files (a quick partial look, not a score)")
    args = parser.parse_args()
    mutations, first = load(args.only)
    work = Path(tempfile.mkdtemp(prefix="efakit-mutate-"))
    tree = work / "efakit"  # nothing beside it: no ../shared, as on a GitHub runner
    try:
        copy_tree(tree, args.tests_from)
        print(f"mutate: {len(mutations)} mutations, tests from "
              f"{args.tests_from or 'the working tree'}, copy in {tree}", file=sys.stderr)
        if not args.no_baseline:
            start = time.monotonic()
            code, output = suite(tree, ["tests"], args.timeout * 2)
            print(f"baseline: exit {code} in {time.monotonic() - start:.0f} s: "
                  f"{output.strip().splitlines()[-1] if output.strip() else ''}",
                  file=sys.stderr)
            if code != 0:
                print(output[-4000:], file=sys.stderr)
                print("mutate: the unmutated suite is not green; no score", file=sys.stderr)
                return 1
        outcomes = []
        for mutation in mutations:
            outcome = run_one(tree, mutation, first.get(mutation.file, []), args.timeout,
                              args.files)
            outcomes.append(outcome)
            print(f"{outcome.status:11} {mutation.name:42} {outcome.seconds:6.0f} s  "
                  f"{outcome.detail}", flush=True)
    finally:
        if args.keep:
            print(f"mutate: kept {tree}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    scored = [o for o in outcomes if o.status != "not applied"]
    killed = [o for o in scored if o.status == "killed"]
    survivors = [o for o in scored if o.status == "survived"]
    rate = len(killed) / len(scored) if scored else 0.0
    print(f"\nkilled {len(killed)}/{len(scored)} = {rate:.0%} (goal {GOAL:.0%})")
    for o in survivors:
        print(f"  survived: {o.mutation.name} ({o.mutation.file}): {o.mutation.why}")
    for o in outcomes:
        if o.status == "not applied":
            print(f"  not applied: {o.mutation.name} ({o.mutation.file}): {o.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
