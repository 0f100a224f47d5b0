"""`efa-verify static`: what a CI runner can establish about an image, without GPU or EFA.

Each check carries its evidence (paths, versions read from the files).  The
checks read a root directory (`/` inside the image; a hand-made tree in
tests), so they never need the image's hardware.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from verify import elf, envrules, netplugin, rootfs
from verify.checks import Check, Evidence
from verify.components import owner_of
from verify.profiles import Profile
from verify.sshcheck import ssh_check
from verify.tables import load_table

NCCL_VERSION_RE = re.compile(rb"(\d+\.\d+\.\d+)\+cuda(\d+\.\d+)")
PLUGIN_VERSION_RE = re.compile(rb"aws-ofi-nccl (v?\d+\.\d+\.\d+[\w.-]*)")
LIBFABRIC_EFA_MARKER = b"FI_EFA_"  # the efa provider registers its FI_EFA_* parameters
# The nccl-tests binaries an image must ship: every benchmark `run --test` and
# `sweep --test` offer (verify/data/run.yaml), broadcast included; render builds the same list.
NCCL_TESTS = tuple(load_table("run")["benchmarks"].values())


@dataclass
class Image:
    """What the checks look at: a root, the image's env record and its environment."""

    root: Path
    record: dict
    environ: dict[str, str]
    instance: Profile | None = None
    dirs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        ld = [d for d in self.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
        self.dirs = elf.search_dirs(self.root, ld)

    def path(self, text: str) -> Path | None:
        """The image's `text` resolved inside the root (verify/rootfs.py says why)."""
        return rootfs.inside(self.root, text)

    def absent(self, component: str) -> bool:
        return component in self.record.get("absent", [])

    def show(self, path: Path | str) -> str:
        """`path` as seen from inside the image."""
        shown = str(path)
        root = str(self.root).rstrip("/")
        if root and shown.startswith(root):
            shown = shown[len(root):] or "/"
        return shown

    def ev(self, path: Path | str, text: str) -> Evidence:
        return Evidence(self.show(path), 1, None, text)


def declared_environ(record: dict) -> dict[str, str]:
    """The environment a container of the image starts with, as its env record states
    it: the ENV it bakes over the start defaults its entrypoint exports (the gate
    judges ENV the same way).  With --root, not the caller's os.environ: a host that
    exports FI_EFA_USE_DEVICE_RDMA=0 failed a healthy image (attack-2 SA-1)."""
    declared = {**(record.get("start_defaults") or {}), **(record.get("env") or {})}
    return {name: value for name, value in declared.items() if value is not None}


def _absent_check(name: str, image: Image) -> Check | None:
    """A fail naming the component when the image's record says its spec left it out."""
    owner = owner_of(name)
    if owner is not None and image.absent(owner.name):
        return Check(name, "fail", True, f"{owner.label} is absent from this image (its "
                     "spec leaves it out)")
    return None


def _same_version(found: str, expected: str | None) -> bool:
    """`1.21.1`, `v1.21.1`, `1.21.1-aws` and `1.21.1aws` are one release; `1.21.10` is not."""
    if not expected:
        return True
    release = re.match(r"v?([0-9]+(?:\.[0-9]+)*)", found)
    return bool(release) and release.group(1) == re.match(r"v?([0-9]+(?:\.[0-9]+)*)",
                                                          expected).group(1)


def _cut(name: str, limit: int = 200) -> str:
    """A name as a message shows it: a 5000-character NCCL_NET_PLUGIN is cut."""
    return name if len(name) <= limit else f"{name[:limit]}... ({len(name)} characters)"


def _no_plugin(image: Image, tried: list[str]) -> str:
    """Why NCCL would load no net plugin, naming what it would try and any plugin file
    that lies where NCCL will not look for it."""
    setting = image.environ.get("NCCL_NET_PLUGIN")
    told = "NCCL_NET_PLUGIN unset" if setting is None else f"NCCL_NET_PLUGIN={_cut(setting)!r}"
    text = (f"NCCL would load no net plugin and use sockets: with {told} it opens "
            f"{', '.join(map(_cut, tried)) or 'no external plugin'}, not found on the loader path "
            f"(LD_LIBRARY_PATH, ld.so.conf: {':'.join(image.dirs[:6])})")
    libdir = image.record.get("ofi_nccl_libdir")
    where = image.path(libdir) if libdir else None
    if where is not None:
        others = sorted(p.name for p in where.glob(f"{netplugin.PREFIX}*.so"))
        if others:
            text += f"; {libdir} holds {', '.join(others)}"
    return text


def check_plugin(image: Image) -> list[Check]:
    """The net plugin NCCL will open (NCCL_NET_PLUGIN and NCCL's file-name rules, on the
    image's loader path), that it is aws-ofi-nccl at the spec's version, and its links."""
    absent = _absent_check("plugin", image)
    if absent:
        return [absent, Check("plugin_deps", "skip", True, "no plugin to resolve"),
                Check("plugin_dlopen", "skip", True, "no plugin to resolve")]
    plugin, tried = netplugin.resolve(image.environ.get("NCCL_NET_PLUGIN"), image.root,
                                      image.dirs)
    if plugin is None:
        return [Check("plugin", "fail", True, _no_plugin(image, tried)),
                Check("plugin_deps", "skip", True, "no plugin to resolve"),
                Check("plugin_dlopen", "skip", True, "no plugin to resolve")]
    try:
        data = elf.read_file(plugin)
        if not data.startswith(b"\x7fELF"):
            raise elf.ElfError(f"{plugin}: not an ELF file")
    except elf.ElfError as exc:  # NCCL's dlopen fails too, and it goes on to sockets
        return [Check("plugin", "fail", True, f"NCCL opens {image.show(plugin)}: not a "
                      f"loadable library ({image.show(str(exc))}); NCCL would skip it and "
                      "fall back to sockets", [image.ev(plugin, f"opened for {tried[-1]}")]),
                Check("plugin_deps", "skip", True, "no loadable plugin to resolve"),
                Check("plugin_dlopen", "skip", True, "no loadable plugin to resolve")]
    version = PLUGIN_VERSION_RE.search(data)
    found = version.group(1).decode() if version else None
    expected = image.record["versions"].get("aws_ofi_nccl")
    status = "pass" if found and _same_version(found, expected) else "fail"
    message = f"NCCL opens {image.show(plugin)}: " + (
        f"aws-ofi-nccl {found} (expected {expected})" if found else
        "not aws-ofi-nccl (no aws-ofi-nccl version string): another plugin shadows it")
    checks = [Check("plugin", status, True, message,
                    [image.ev(plugin, f"opened for {tried[-1]}: aws-ofi-nccl {found}")])]
    missing = elf.unresolved(plugin, image.root, image.dirs)
    checks.append(Check(
        "plugin_deps", "fail" if missing else "pass", True,
        ("unresolved: " + ", ".join(f"{lib} (needed by {who})" for lib, who in missing.items())
         + "; NCCL would skip the plugin and fall back to sockets") if missing
        else "every library the plugin needs resolves", [image.ev(plugin, "DT_NEEDED")]))
    checks.append(check_dlopen(image, plugin))
    return checks


def check_dlopen(image: Image, plugin: Path) -> Check:
    """Every library the plugin and libfabric dlopen (verify/data/dlopen.yaml) resolves
    as dlopen would find it: LD_LIBRARY_PATH, the opener's RUNPATH, ld.so.conf, the
    default dirs.  Host-provided ones (the driver) are listed, never required."""
    openers = {"aws_ofi_nccl": plugin,
               "libfabric": elf.find_library("libfabric.so.1", image.root, image.dirs)}
    missing, found, host = [], [], []
    for row in load_table("dlopen")["dlopen"]:
        opener = openers.get(row["opened_by"])
        if opener is None or image.absent(row.get("needs", "")):
            continue
        if row.get("host"):
            host.append(row["names"][0])
            continue
        runpath = [p.replace("$ORIGIN", image.show(opener.parent))
                   for p in elf.read_dynamic(opener).runpath]
        lib = next((p for n in row["names"]
                    if (p := elf.find_library(n, image.root, runpath + image.dirs))), None)
        who = f"{row['names'][0]} (dlopened by {opener.name}: {row['source']})"
        if lib is None:
            missing.append(who)
        else:
            found.append(image.ev(lib, who))
    if missing:
        return Check("plugin_dlopen", "fail", True, "cannot be found with the image's loader "
                     "configuration: " + "; ".join(missing) + "; NCCL would fall back to "
                     "sockets or lose GPUDirect", found)
    return Check("plugin_dlopen", "pass", True, f"{len(found)} dlopen() targets resolve"
                 + (f" ({', '.join(host)} come from the host's driver)" if host else ""), found)


def check_libfabric(image: Image) -> list[Check]:
    lib = elf.find_library("libfabric.so.1", image.root, image.dirs)
    if lib is None:
        return [Check("libfabric", "fail", True, "libfabric.so.1 is not on the library path"),
                Check("libfabric_efa", "skip", True, "no libfabric")]
    real = lib  # link-free already: resolved inside the root (verify/rootfs.py)
    providers = sorted((real.parent / "libfabric").glob("libefa*-fi.so"))
    candidates = [real, *(rootfs.inside(image.root, image.show(c)) for c in providers)]
    efa = next((c for c in candidates if c is not None and c.exists()
                and LIBFABRIC_EFA_MARKER in elf.read_file(c)), None)
    version = image.record["versions"].get("libfabric")
    return [
        Check("libfabric", "pass", True, f"libfabric resolves ({real.name}; spec {version})",
              [image.ev(real, real.name)]),
        Check("libfabric_efa", "pass" if efa else "fail", True,
              "the efa provider is compiled in (its FI_EFA_* parameters are in "
              f"{efa.name})" if efa else "libfabric has no efa provider (no FI_EFA_* "
              "parameters in the library or a provider DSO)",
              [image.ev(efa, "FI_EFA_")] if efa else []),
    ]


def _nccl_copies(image: Image) -> list[Path]:
    seen, copies = set(), []
    dirs = list(image.dirs)
    for site in image.root.glob("usr/local/lib/python3*/dist-packages/nvidia/nccl/lib"):
        dirs.append("/" + str(site.relative_to(image.root)))
    for site in image.root.glob("opt/conda/lib/python3*/site-packages/nvidia/nccl/lib"):
        dirs.append("/" + str(site.relative_to(image.root)))
    for directory in dirs:
        candidate = image.path(f"{directory}/libnccl.so.2")
        if candidate is not None and candidate.exists() and candidate not in seen:
            seen.add(candidate)  # link-free already: resolved inside the root
            copies.append(candidate)
    return copies


def check_nccl(image: Image) -> list[Check]:
    copies = _nccl_copies(image)
    versions = {}
    for copy in copies:
        match = NCCL_VERSION_RE.search(elf.read_file(copy))
        versions[copy] = f"{match.group(1).decode()}+cuda{match.group(2).decode()}" \
            if match else "unreadable"
    evidence = [image.ev(c, f"libnccl.so.2 {v}") for c, v in versions.items()]
    if not copies:
        return [Check("nccl_single", "fail", True, "no libnccl.so.2 reachable")]
    checks = [Check("nccl_single", "pass" if len(copies) == 1 else "fail", True,
                    "exactly one libnccl.so.2 is reachable" if len(copies) == 1 else
                    f"{len(copies)} copies of libnccl.so.2 are reachable: the one loaded "
                    "depends on link order", evidence)]
    expected = image.record["versions"].get("nccl")
    found = next(iter(versions.values()))
    status = "pass" if expected and found.startswith(expected + "+") else \
        "unknown" if found == "unreadable" else "fail"
    checks.append(Check("nccl_version", status, True, f"NCCL {found} (spec {expected})",
                        evidence[:1]))
    return checks


def check_installer(image: Image) -> Check:
    absent = image.absent("efa_installer")
    record = image.path("/opt/amazon/efa_installed_packages")
    recorded = record is not None and record.exists()
    if absent and not image.absent("libfabric"):
        return Check("efa_installer", "skip", True, "no EFA installer in this image: its spec "
                     "builds libfabric and rdma-core from pinned sources into the installer's "
                     "layout (/opt/amazon/efa)")
    if absent:
        return Check("efa_installer", "fail", True, "the EFA installer is absent from this "
                     "image, and so are the libfabric and rdma-core it would bring")
    return Check("efa_installer", "pass" if recorded else "fail", True,
                 "EFA installer packages recorded" if recorded else
                 "/opt/amazon/efa_installed_packages missing",
                 [image.ev(record, "installed")] if recorded else [])


def check_nccl_tests(image: Image) -> list[Check]:
    """nccl-tests: present, linked to MPI, GPU code for every arch the spec targets, and
    the one libnccl.so.2 of the image is the one they resolve."""
    names = ("nccl_tests", "nccl_tests_archs", "nccl_tests_nccl")
    absent = _absent_check("nccl_tests", image)
    binaries = [image.path(f"/opt/nccl-tests/{b}") for b in NCCL_TESTS]
    present = [b for b in binaries if b is not None and b.exists()]
    if absent or not present:
        first = absent or Check("nccl_tests", "fail", True, "no nccl-tests binaries in "
                                "/opt/nccl-tests")
        return [first] + [Check(n, "skip", True, "no nccl-tests binaries") for n in names[1:]]
    needed = elf.read_dynamic(present[0]).needed
    mpi = any(n.startswith("libmpi") for n in needed)
    checks = [Check("nccl_tests", "pass" if mpi else "fail", True,
                    f"{len(present)} nccl-tests binaries, "
                    + ("linked to MPI" if mpi else "not linked to MPI (MPI=1 missing)"),
                    [image.ev(present[0], " ".join(needed))])]
    wanted = set(image.record.get("gpu_archs") or [])
    short = {}
    evidence = []
    for binary in present:
        sass = elf.fatbin_archs(binary)["sass"]
        evidence.append(image.ev(binary, "SASS " + (",".join(sorted(sass)) or "none")))
        if wanted - sass:
            short[binary.name] = sorted(wanted - sass)
    if not wanted:
        checks.append(Check("nccl_tests_archs", "unknown", True, "the image's record names no "
                            "gpu_archs to compare with", evidence))
    else:
        checks.append(Check(
            "nccl_tests_archs", "fail" if short else "pass", True,
            "no GPU code for " + "; ".join(f"{b}: {', '.join(a)}" for b, a in short.items())
            + " (those GPUs would fail with 'no kernel image is available')" if short else
            f"every binary carries GPU code for {', '.join(sorted(wanted))}", evidence))
    copies = _nccl_copies(image)
    resolved = {}
    for binary in present:
        dyn = elf.read_dynamic(binary)
        dirs = [p.replace("$ORIGIN", "/opt/nccl-tests") for p in dyn.runpath] + image.dirs
        lib = elf.find_library("libnccl.so.2", image.root, dirs)
        resolved[binary.name] = lib.resolve() if lib else None
    wrong = {b: r for b, r in resolved.items() if r is None or copies[:1] != [r]}
    checks.append(Check(
        "nccl_tests_nccl", "fail" if wrong or len(copies) != 1 else "pass", True,
        "nccl-tests resolve the image's one libnccl.so.2" if not wrong and len(copies) == 1
        else "nccl-tests resolve " + ", ".join(
            f"{b}: {image.show(r) if r else 'no libnccl.so.2'}" for b, r in
            (wrong or resolved).items()) + f" among {len(copies)} copies of libnccl.so.2",
        [image.ev(r, f"{b} -> libnccl.so.2") for b, r in resolved.items() if r][:4]))
    return checks


def check_files(image: Image) -> list[Check]:
    checks = [check_installer(image)] + check_nccl_tests(image)
    absent = _absent_check("gdrcopy", image)
    gdr = elf.find_library("libgdrapi.so.2", image.root, image.dirs)
    checks.append(absent or Check("gdrcopy", "pass" if gdr else "fail", True,
                                  f"GDRCopy library {gdr.name}" if gdr
                                  else "libgdrapi.so.2 not on the library path"))
    checks.append(ssh_check(image.root))  # verify/sshcheck.py says why each condition
    return checks


def check_env(image: Image) -> list[Check]:
    versions = image.record["versions"]
    ruled = {k: v for k, v in image.environ.items() if k.startswith(("FI_", "NCCL_", "RDMAV_"))}
    profiles = [image.instance] if image.instance else None
    findings = envrules.lint_env(ruled, versions, profiles)
    where = image.instance.name if image.instance else "every instance family"
    return [Check("env", "fail" if findings else "pass", True,
                  "; ".join(f.message() for f in findings) if findings
                  else f"FI_/NCCL_ environment matches the env rules for {where}",
                  [Evidence("environment", 1, None, f"{k}={v}") for k, v in sorted(ruled.items())])]


def check_commands(image: Image, run: Callable[[list[str]], tuple[int, str]]) -> list[Check]:
    """Checks that execute something: only meaningful when the root is `/`."""
    code, out = run(["mpirun", "--allow-run-as-root", "--version"])
    checks = [Check("mpirun", "pass" if code == 0 else "fail", True,
                    out.splitlines()[0] if code == 0 and out else
                    f"mpirun --allow-run-as-root --version failed: {out.strip()[-200:]}")]
    code, out = run(["python3", "-c", "import torch, sys; v = torch.cuda.nccl.version() "
                     "if torch.cuda.is_available() else None; print(torch.__version__, v)"])
    if code != 0:
        checks.append(Check("torch", "fail", True, f"import torch failed: {out.strip()[-200:]}"))
    else:
        torch_version, nccl = out.split()[:2]
        checks.append(Check("torch", "pass", True, f"torch {torch_version} imports"
                            + (f", NCCL {nccl}" if nccl != "None" else
                               " (CPU build: torch's NCCL not queried)")))
    return checks


def _run(cmd: list[str]) -> tuple[int, str]:
    if shutil.which(cmd[0]) is None:
        return 127, f"{cmd[0]} not found"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1",
                               "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"})
    return proc.returncode, proc.stdout + proc.stderr


def static_checks(image: Image, execute: bool) -> list[Check]:
    checks = check_plugin(image) + check_libfabric(image) + check_nccl(image) \
        + check_files(image) + check_env(image)
    if execute:
        checks += check_commands(image, _run)
    return checks
