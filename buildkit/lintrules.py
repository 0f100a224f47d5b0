"""Rules over a rendered Dockerfile that refuse what contradicts its bases' facts.

The production templates once passed hadolint and the goldens while none of the three
production bases could build them: the EFA installer ran without apt lists, the python
they called did not exist, pip met PEP 668, a held package was removed with -y.  Each
rule here reads the rendered Dockerfile stage by stage, knows each stage's base facts
(images/base-facts.yaml, buildkit/basefacts.py) and what earlier steps of the stage did,
and names the finding of the production review (shared/audits/production-review-
2026-12-07.md) it would have caught.  `efakit lint` runs them on every base and variant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from buildkit import basefacts
from buildkit.basefacts import BaseFacts

INSTALLER_RE = re.compile(r"aws-efa-installer-(\d+)\.(\d+)\.\d+\.tar\.gz")
PYTHON_CALL_RE = re.compile(r"(?:^|[\s;&|(\"'])((?:/[\w.+-]+)*/?python3?(?:\.\d+)?)\s+-[cm]\b")
PIP_INSTALL_RE = re.compile(r"-m pip install\b([^&|;]*)")
OUT_OF_ENV = ("--target", "--prefix", "--root")
SILENT_LOOKUP_RE = re.compile(r"2>/dev/null\s*\|\|\s*true\s*\)")
VERBS = ("libibverbs1", "ibverbs-providers")


@dataclass
class Stage:
    """What is known about a stage at one instruction: its base's facts and what the
    stage's earlier instructions changed."""

    name: str | None
    base: BaseFacts
    apt_lists: bool
    pip_env: bool = False
    apt_python: bool = False
    purged_verbs: bool = False
    cuda_copied: bool = False
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    rule: str
    finding: str
    stage: str
    line: int
    message: str

    def text(self) -> str:
        return f"line {self.line} ({self.stage}): {self.rule}: {self.message} [{self.finding}]"


@dataclass(frozen=True)
class Rule:
    name: str
    finding: str  # the production review's finding this rule would have caught
    check: Callable[[Stage, str, str], str | None]  # (stage, instruction, args) -> message


def instructions(text: str) -> Iterator[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) with continuation lines joined and comment and empty
    lines dropped, also inside a continuation (as Docker's parser does)."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = " ".join(pending)
        pending = []
        word, _, args = joined.partition(" ")
        yield start, word.upper(), args.strip()


def _installer_run(args: str) -> bool:
    return "efa_installer.sh" in args


def _installer_version(args: str) -> tuple[int, int] | None:
    match = INSTALLER_RE.search(args)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _installer_apt_lists(stage: Stage, word: str, args: str) -> str | None:
    if word != "RUN" or not _installer_run(args) or stage.apt_lists:
        return None
    before = args.split("efa_installer.sh", 1)[0]
    if "apt-get update" in before:
        return None
    return ("the EFA installer runs its own `apt install` without `apt-get update`, and "
            f"{stage.base.name} has no apt lists here: run apt-get update in the same RUN")


def _installs_python(args: str) -> bool:
    return bool(re.search(r"apt-get install[^&|;]*\spython3(-dev|-pip)?(\s|$)", args))


def _pythons(args: str) -> list[str]:
    return [m.group(1) for m in PYTHON_CALL_RE.finditer(args)]


def _python_exists(stage: Stage, word: str, args: str) -> str | None:
    if word != "RUN":
        return None
    have = {stage.base.python} if stage.base.python else set()
    if stage.apt_python or _installs_python(args):
        have |= {"/usr/bin/python3", "python3"}
    if stage.base.python:
        have.add(stage.base.python.rsplit("/", 1)[-1])
    missing = sorted({p for p in _pythons(args) if p not in have})
    if not missing:
        return None
    return (f"calls {', '.join(missing)}, which {stage.base.name} does not have (base facts: "
            f"python {stage.base.python or 'none'}"
            + (", plus the distro python3 installed above" if stage.apt_python else "") + ")")


def _pep668(stage: Stage, word: str, args: str) -> str | None:
    if word != "RUN" or stage.pip_env or "--break-system-packages" in args:
        return None
    python_em = stage.base["pip_externally_managed"]
    for match in PIP_INSTALL_RE.finditer(args):
        if python_em and not any(flag in match.group(1) for flag in OUT_OF_ENV):
            return (f"pip installs into {stage.base.name}'s externally managed python "
                    "(PEP 668 refuses it): set PIP_BREAK_SYSTEM_PACKAGES=1 or pass "
                    "--break-system-packages")
    return None


def _held_remove(stage: Stage, word: str, args: str) -> str | None:
    if word != "RUN" or not re.search(r"apt(-get)? (remove|purge)", args):
        return None
    if "--allow-change-held-packages" in args:
        return None
    held = sorted(p for p in stage.base.held if re.search(rf"(?<![\w.-]){re.escape(p)}(?![\w.-])",
                                                          args))
    if not held:
        return None
    return (f"removes {', '.join(held)}, held in {stage.base.name}: apt-get remove -y fails "
            "without --allow-change-held-packages")


def _cudart_where_cuda_is(stage: Stage, word: str, args: str) -> str | None:
    if word != "RUN" or "libcudart" not in args or "/usr/local/cuda" not in args:
        return None
    if stage.base["cuda"] in ("toolkit", "runtime") or stage.cuda_copied:
        return None
    return (f"looks for libcudart in /usr/local/cuda, which {stage.base.name} does not have "
            f"(base facts: cuda {stage.base['cuda']})")


def _ngc_flags(stage: Stage, word: str, args: str) -> str | None:
    if word != "RUN" or not _installer_run(args) or not stage.base["ngc_marker"]:
        return None
    version = _installer_version(args)
    if version is not None and version < (1, 48):
        return None
    if "--disable-ngc" in args:
        return None
    return (f"{stage.base.name} has {basefacts.NGC_MARKER}: installer >= 1.48 then installs "
            "its NGC plugin package, without libnccl-net.so; pass --disable-ngc")


def _ngc_rdma_core(stage: Stage, word: str, args: str) -> str | None:
    if word != "RUN" or not _installer_run(args) or not stage.base["ngc_marker"]:
        return None
    if not stage.purged_verbs or "--disable-build-ngc" in args:
        return None
    return ("rdma-core was removed above and the installer's NGC-build mode skips it: "
            "libfabric1-aws fails its dependencies; pass --disable-build-ngc")


def _hpcx_removed(stage: Stage, word: str, args: str) -> str | None:
    hpcx = stage.base["hpcx"]
    if word != "RUN" or not hpcx or "rm " not in args:
        return None
    if re.search(rf"(?<![\w/.-]){re.escape(hpcx)}/?(?![\w/.-])", args):
        return (f"removes {hpcx}: {stage.base.name}'s torch links HPC-X's UCX, UCC and Open "
                "MPI 5 (import torch fails)")
    return None


def _silent_lookup(stage: Stage, word: str, args: str) -> str | None:
    if word == "RUN" and SILENT_LOOKUP_RE.search(args):
        return ("a lookup whose failure is swallowed (`2>/dev/null || true` in a command "
                "substitution): a missing path must stop the build")
    return None


RULES = (
    Rule("installer-apt-lists", "finding 1: EFA installer runs with empty apt lists",
         _installer_apt_lists),
    Rule("python-exists", "finding 2/3: the python the Dockerfile calls is not in the base",
         _python_exists),
    Rule("pep668", "finding 3: pip meets PEP 668 (externally managed python)", _pep668),
    Rule("held-packages", "finding 4: apt-get remove -y of a held package", _held_remove),
    Rule("cudart-where-cuda-is", "finding 6: libcudart looked for where CUDA is not",
         _cudart_where_cuda_is),
    Rule("ngc-marker-flags", "finding 9 (issue item 6): NGC detection by the marker",
         _ngc_flags),
    Rule("ngc-rdma-core", "finding 5: rdma-core removed, then skipped by NGC-build mode",
         _ngc_rdma_core),
    Rule("hpcx-kept", "finding 7: HPC-X deleted under NGC torch", _hpcx_removed),
    Rule("no-silent-fallback", "issue 25 item 2: a probe that falls back silently",
         _silent_lookup),
)


def _after(stage: Stage, word: str, args: str) -> Stage:
    """The stage's state after one instruction."""
    if word == "ENV":
        env = dict(stage.env)
        for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)", args):
            env[key] = value
        return replace(stage, env=env,
                       pip_env=env.get("PIP_BREAK_SYSTEM_PACKAGES", "") in ("1", "true", "yes"))
    if word == "COPY" and "/usr/local/cuda/lib64/libcudart" in args:
        return replace(stage, cuda_copied=True)
    if word != "RUN":
        return stage
    lists = stage.apt_lists
    cached_lists = "target=/var/lib/apt/lists" in args
    if "apt-get update" in args and not cached_lists:
        lists = True
    if "rm -rf /var/lib/apt/lists" in args:
        lists = False
    installs_python = _installs_python(args)
    purged = any(v in args for v in VERBS) and re.search(r"apt(-get)? (remove|purge)", args)
    return replace(stage, apt_lists=lists, apt_python=stage.apt_python or installs_python,
                   purged_verbs=stage.purged_verbs or bool(purged))


def lint_dockerfile(text: str, rows: dict[str, BaseFacts] | None = None) -> list[Problem]:
    """Every rule's problems in a rendered Dockerfile, in file order."""
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    problems: list[Problem] = []
    for line, word, args in instructions(text):
        if word == "FROM":
            parts = args.split()
            ref = parts[0]
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            if ref in stages:
                stage = replace(stages[ref], name=alias)
            else:
                base = basefacts.for_image(ref, rows)
                stage = Stage(alias, base, apt_lists=base["apt_lists"])
            if alias:
                stages[alias] = stage
            continue
        if stage is None:
            continue
        for rule in RULES:
            message = rule.check(stage, word, args)
            if message:
                problems.append(Problem(rule.name, rule.finding, stage.name or "final", line,
                                        message))
        stage = _after(stage, word, args)
        if stage.name:
            stages[stage.name] = stage
    problems += _final_env(stage)
    return problems


def _final_env(stage: Stage | None) -> list[Problem]:
    """Finding 8: an OPAL_PREFIX the base sets must be replaced in the final image."""
    if stage is None or not stage.base["opal_prefix"] or "OPAL_PREFIX" in stage.env:
        return []
    return [Problem("opal-prefix", "finding 8: a stale OPAL_PREFIX", stage.name or "final", 0,
                    f"{stage.base.name} sets OPAL_PREFIX={stage.base['opal_prefix']} (HPC-X's "
                    "Open MPI); the image's mpirun is the installer's: set OPAL_PREFIX")]


def lint_bases(spec_file: Path | str, profile: str | None) -> list[str]:
    """The rules over every base and variant the spec renders (one line per problem)."""
    from buildkit.render import context_values, render_dockerfile
    from buildkit.spec import load_spec
    from verify.tables import load_yaml_file

    raw = load_yaml_file(spec_file)
    choices = ((raw.get("profiles") or {}).get(profile) or {}).get("base") if profile else None
    names = list((choices or raw["base"])["choices"])
    lines = []
    for name in names:
        spec = load_spec(spec_file, profile=profile, base=name)
        for variant in spec.variants:
            text = render_dockerfile(context_values(spec, variant))
            lines += [f"{name}/{variant}: {p.text()}" for p in lint_dockerfile(text)]
    return lines
