"""Render a complete, byte-reproducible build context from a validated spec.

Every decision (which components, which lib dirs, which env, which flags) is
made here from the spec and the shared tables; the templates only hold install
steps, so a golden-file diff shows the effect of any decision.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from buildkit import basefacts
from buildkit.basefacts import BaseFacts
from buildkit.paths import REPO_ROOT, TEMPLATES_DIR
from buildkit.spec import PIN_KINDS, Spec
from verify import __version__, envrules, layout
from verify.components import components as component_table
from verify.static import NCCL_TESTS

# Packages the final image needs whatever its components; grouped by why.
RUNTIME = ["ca-certificates", "curl", "openssh-client", "openssh-server", "hwloc", "pciutils"]
# The builder stage's toolchain (never in the final image), plus git to check
# source archives' content trees, plus each component's own build packages.
BUILD_TOOLS = ["build-essential", "ca-certificates", "curl", "git", "python3-dev"]
# Copied into the context so the image carries the verifier and its tables.
VERIFIER_SOURCES = ("pyproject.toml", "README.md", "verify", "buildkit")
# Open MPI where no EFA installer brings it: Debian's (runtime and, in the builder, headers).
SYSTEM_MPI = {"runtime": ["openmpi-bin"], "build": ["libopenmpi-dev"]}
# The distro's Python, for a base that has none (base facts: python null); pip in the
# builder installs the pinned NCCL wheel with --target, which PEP 668 does not refuse.
SYSTEM_PYTHON = {"runtime": ["python3", "python3-pip"], "build": ["python3-pip"]}
# HPC-X's own NCCL net plugin (a second libnccl-net.so, found first on NGC's
# LD_LIBRARY_PATH); the rest of HPC-X stays: NGC torch links its UCX, UCC and Open MPI 5.
HPCX_NET_PLUGIN = "nccl_rdma_sharp_plugin"


class RenderError(RuntimeError):
    """The context could not be written."""


def pin_of(comp: dict[str, Any]) -> str:
    """The pin efakit-fetch-artifact checks: `KIND:HEX`, or UNPINNED."""
    for kind in PIN_KINDS:
        if comp.get(kind):
            return f"{kind}:{comp[kind]}"
    return "UNPINNED"


def _artifact(comp: dict[str, Any]) -> dict[str, Any]:
    """What a template needs to fetch a pinned download (or name a bundled component)."""
    url = comp.get("url")
    return {
        "version": comp["version"],
        "url": url,
        "file": comp.get("file") or (url.rsplit("/", 1)[-1] if url else None),
        "sha256": pin_of(comp),
    }


def verifier_dependencies() -> list[str]:
    """The in-image verifier's requirements ([tool.efakit] image-dependencies in
    pyproject.toml, the one place they live), shell-quoted for the Dockerfile."""
    import shlex

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        pyproject = tomllib.load(handle)
    return [shlex.quote(d) for d in pyproject["tool"]["efakit"]["image-dependencies"]]


_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./:,=+@%-]*")


def dockerfile_quote(value: str) -> str:
    """An ENV value in Dockerfile syntax: as it is when plain, else in double quotes with
    backslash, double quote and dollar escaped (so `a b` stays one value and `$X` stays
    literal).  A newline or control character cannot be carried safely and is refused
    (the spec schema refuses it first; this is the last guard before a value could add
    an instruction)."""
    if _PLAIN_VALUE.fullmatch(value):
        return value
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise RenderError(f"env value {value!r} holds a control character")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def gencode(archs: list[str]) -> str:
    """NVCC_GENCODE for nccl-tests/NCCL: one SASS target per arch."""
    return " ".join(f"-gencode=arch=compute_{a[3:]},code={a}" for a in archs)


def _built(spec: Spec) -> dict[str, list[dict[str, Any]]]:
    """Components compiled in a builder stage, grouped by stage in table order."""
    stages: dict[str, list[dict[str, Any]]] = {}
    for name, row in component_table().items():
        comp = spec.components.get(name)
        if not comp or comp.get("source") not in ("archive", "release"):
            continue
        stages.setdefault(row.stage, []).append({
            **_artifact(comp), "name": name, "label": row.label, "source": comp["source"],
            "prefix": row.prefix, "libdir": row.libdir, "license": list(row.license),
            "licenses_dir": row.licenses_dir()})
    return stages


def _facts(spec: Spec, base: BaseFacts) -> dict[str, str | None]:
    """The layout table's keys for one stage: the spec's and its base image's."""
    comps = spec.components
    return {"distro": spec.distro_family(),
            "efa_installer": (comps.get("efa_installer") or {}).get("version"),
            "source": (comps.get("aws_ofi_nccl") or {}).get("source"),
            "efa_source": (comps.get("libfabric") or {}).get("source", "installer"),
            "ngc_marker": "yes" if base["ngc_marker"] else "no"}


def stage_facts(spec: Spec) -> tuple[BaseFacts, BaseFacts]:
    """The base facts of the final stage's image and of the builder's (RenderError when the
    table has no row for one: every path the templates use comes from a fact)."""
    try:
        final = basefacts.for_image(spec.base["image"])
        builder = basefacts.for_image(spec.base.get("builder_image") or spec.base["image"])
    except basefacts.FactsError as exc:
        raise RenderError(str(exc)) from None
    return final, builder


def cuda_major(spec: Spec) -> str:
    cuda = str(spec.base.get("cuda") or "")
    if not cuda:
        raise RenderError(f"base {spec.base_name} names no cuda version")
    return cuda.split(".")[0]


def _cudart(spec: Spec, final: BaseFacts) -> dict[str, str]:
    """Where the final stage's libcudart.so.N is: the toolkit's lib64, or (CUDA from
    wheels) the nvidia-cuda-runtime wheel's lib, found by the base's Python."""
    if final["cuda"] in ("toolkit", "runtime") or spec.base.get("builder_wheels"):
        return {"dir": "/usr/local/cuda/lib64"}
    if final["cuda"] == "wheels":
        return {"module": f"nvidia.cu{cuda_major(spec)}"}
    raise RenderError(f"base {spec.base_name} has no CUDA runtime (base facts: cuda none) and "
                      "the spec copies none from the builder (builder_wheels)")


def _nccl_sources(spec: Spec, final: BaseFacts, builder: BaseFacts) -> tuple[str, str]:
    """Where each stage's one libnccl.so.2 comes from, (final, builder): `wheel` (the
    base's python, or torch from pip, brings nvidia-nccl-cuNN), `system` (the base's
    libnccl2), or `pin` (the builder installs the pinned wheel, because its base's NCCL is
    not the one the image runs: nccl-tests then compile against the right headers)."""
    final_source = "wheel" if final["nccl"] == "wheel" or spec.base.get("torch_from_pip") \
        else final["nccl"]
    if final_source == "none":
        raise RenderError(f"base {spec.base_name} brings no NCCL (base facts) and torch does "
                          "not come from pip: nothing provides libnccl.so.2")
    if builder["nccl"] == "wheel":
        return final_source, "wheel"
    same = builder.name == final.name and final_source == "system"
    return final_source, "system" if same else "pin"


def _labels(spec: Spec, variant: str) -> dict[str, str]:
    versions = {**{name: (comp or {}).get("version") for name, comp in spec.components.items()},
                "libfabric": spec.versions()["libfabric"]}
    bundles = (spec.components.get("efa_installer") or {}).get("bundles") or {}
    labels = {
        "org.opencontainers.image.title": f"efakit {spec.framework} ({variant})",
        "org.opencontainers.image.base.name": spec.base["image"],
        "dev.efakit.framework": spec.framework,
        "dev.efakit.variant": variant,
        "dev.efakit.profile": spec.profile or "default",
        "dev.efakit.version.torch": spec.base.get("torch") or "none",
        "dev.efakit.version.cuda": spec.base.get("cuda") or "none",
    }
    for name, row in component_table().items():
        labels[f"dev.efakit.version.{row.label}"] = versions.get(name) or bundles.get(name) \
            or "absent"
    labels["dev.efakit.gpu-archs"] = ",".join(spec.gpu_archs) or "none"
    return labels


def context_values(spec: Spec, variant: str) -> dict[str, Any]:
    """Everything the templates need, derived from the spec and tables."""
    if variant not in spec.variants:
        raise RenderError(f"variant {variant!r} not in spec (known: {', '.join(spec.variants)})")
    comps = spec.components
    versions = spec.versions()
    final_base, builder_base = stage_facts(spec)
    facts = _facts(spec, final_base)
    mpi_home = layout.lookup("mpi_home", facts)
    mpi_bin = layout.lookup("mpi_bin", facts)
    table = component_table()

    installer = comps.get("efa_installer")
    efa = None
    if installer:
        efa = dict(_artifact(installer),
                   flags=layout.installer_flags(facts),
                   builder_flags=layout.installer_flags(_facts(spec, builder_base)),
                   signature=installer.get("signature"),
                   key_file="aws-efa-installer.key",
                   bundled=[table[n].label for n, c in comps.items()
                            if (c or {}).get("source") == "installer"])

    ofi_comp = comps.get("aws_ofi_nccl")
    ofi_libdir = layout.lookup("ofi_nccl_libdir", facts) if ofi_comp else None
    if ofi_comp and ofi_libdir is None:
        raise RenderError(f"layout table has no aws-ofi-nccl lib dir for {facts['distro']}")

    nccl_comp = comps.get("nccl") or {"policy": "keep", "version": "unknown"}
    nccl_from, builder_nccl_from = _nccl_sources(spec, final_base, builder_base)
    nccl = dict(_artifact(nccl_comp), policy=nccl_comp["policy"],
                provider=nccl_comp.get("provenance", "base image"),
                wheel=f"nvidia-nccl-cu{cuda_major(spec)}=={nccl_comp['version']}")

    hpcx = final_base["hpcx"]
    keep_base_nccl = nccl_from == "system" and nccl["policy"] == "keep"
    remove = ([] if keep_base_nccl else ["libnccl-dev", "libnccl2"]) \
        + (["ibverbs-providers", "libibverbs1"] if hpcx else [])
    cleanup = {
        "paths": [f"{hpcx}/{HPCX_NET_PLUGIN}"] if hpcx else [],
        "packages": remove,
        "held": any(p in final_base.held for p in remove),
        "why": "a second libnccl.so.2 makes the NCCL in use depend on link order"
               + ("; MOFED verbs shadow the EFA installer's rdma-core, and HPC-X's NCCL net "
                  "plugin is a second libnccl-net.so (the rest of HPC-X stays: NGC torch "
                  "links it)" if hpcx else ""),
    }

    stages = _built(spec)
    present = [table[name] for name in comps if name in table]
    system_mpi = not installer
    system_packages = sorted(set(RUNTIME + [p for row in present for p in row.runtime_packages]
                                 + (SYSTEM_MPI["runtime"] if system_mpi else [])
                                 + (SYSTEM_PYTHON["runtime"] if final_base.python is None
                                    else [])
                                 + (["gnupg"] if (efa or {}).get("signature") else [])))
    build_packages = sorted(set(BUILD_TOOLS + [p for row in present for p in row.build_packages]
                                + (SYSTEM_MPI["build"] if system_mpi else [])
                                + (SYSTEM_PYTHON["build"] if builder_nccl_from == "pin"
                                   else [])
                                + (["gnupg"] if (efa or {}).get("signature") else [])))

    # What an instance may change at start is exported by the entrypoint, not baked in
    # ENV: a variable present when the container starts is then always the user's.
    defaults = envrules.start_defaults(versions)
    image_env = {d.var: d.value for d in envrules.image_env(versions).values()
                 if d.is_set and d.var not in defaults}
    env = {**image_env, **spec.env_extra}
    libdirs = [d for d in (ofi_libdir, layout.lookup("libfabric_libdir", facts)) if d]
    # The installer's Open MPI 4 goes after the base's own libraries where the base brings
    # HPC-X (NGC torch needs its Open MPI 5 first; mpirun by absolute path puts its own
    # lib first for the ranks it starts), and OPAL_PREFIX then names the installer's tree.
    after = [f"{mpi_home}/lib"] if not system_mpi and hpcx else []
    if not system_mpi and not hpcx:
        libdirs.append(f"{mpi_home}/lib")
    extra_env = [f"OPAL_PREFIX={mpi_home}"] if final_base["opal_prefix"] and not system_mpi \
        else []
    path_prefix = ([] if mpi_bin == "/usr/bin" else [mpi_bin]) \
        + [f"{table['libfabric'].prefix}/bin"]  # fi_info, fi_pingpong, as the installer has them
    if comps.get("nccl_tests"):
        path_prefix.append(table["nccl_tests"].prefix)

    packages = spec.packages(variant)
    mirror_pip = "--no-index --find-links /artifacts/wheels " if spec.mirror else ""
    if spec.base.get("builder_wheels"):
        cuda_home = f"/opt/cuda-wheels/nvidia/cu{cuda_major(spec)}"
    elif builder_base["cuda"] == "toolkit":
        cuda_home = "/usr/local/cuda"
    else:
        raise RenderError(f"builder image of base {spec.base_name} has no CUDA toolkit (base "
                          f"facts {builder_base.name}: cuda {builder_base['cuda']}) and the spec "
                          "gives no builder_wheels: nothing compiles the GPU components")
    return {
        "efakit_version": __version__,
        "spec_file": f"images/{spec.path.name}",
        "framework": spec.framework,
        "variant": variant,
        "profile": spec.profile,
        "base_name": spec.base_name,
        "base": spec.base,
        "builder_image": spec.base.get("builder_image") or spec.base["image"],
        "builder_wheels": bool(spec.base.get("builder_wheels")),
        "cuda_home": cuda_home,
        "python": spec.base["python"],
        "mirror": bool(spec.mirror),
        "verifier_deps": verifier_dependencies(),
        "torch_from_pip": bool(spec.base.get("torch_from_pip")),
        "torch_index": "https://download.pytorch.org/whl/cu"
        + "".join(str(spec.base.get("cuda") or "").split(".")[:2]),
        "pip_install": f"efakit-with-ca {spec.base['python']} -m pip install --no-compile "
                       f"{mirror_pip}".rstrip(),
        "mirror_pip": mirror_pip.rstrip(),
        "pip_break_system_packages": final_base["pip_externally_managed"],
        "cudart": _cudart(spec, final_base),
        "nccl_from": nccl_from,
        "builder_nccl_from": builder_nccl_from,
        "has_nccl_tests": bool(comps.get("nccl_tests")),
        "system_packages": system_packages,
        "build_packages": build_packages,
        "cleanup": cleanup,
        "efa": efa,
        "stages": stages,
        "copies": sorted({(stage, c["prefix"]) for stage, built in stages.items()
                          for c in built}, key=lambda sp: sp[1]),
        "ofi_libdir": ofi_libdir,
        "ld_dirs": sorted({c["libdir"] for built in stages.values() for c in built
                           if c["libdir"]}),
        "libfabric_prefix": table["libfabric"].prefix,
        "nccl_tests_bins": [name.removesuffix("_perf") for name in NCCL_TESTS],
        "has_plugin": bool(ofi_comp),
        "nccl": nccl,
        "gencode": gencode(spec.gpu_archs),
        "mpi_home": mpi_home,
        "mpi_bin": mpi_bin,
        "env_lines": ([f"PATH={':'.join(path_prefix)}:$PATH"] if path_prefix else [])
        + ["LD_LIBRARY_PATH=" + ":".join(libdirs) + "${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
           + "".join(f":{d}" for d in after)]
        + extra_env
        + [f"{name}={dockerfile_quote(value)}" for name, value in env.items()],
        "cmd": '["train"]' if variant == "sagemaker" else '["/bin/bash"]',
        "variant_packages": packages,
        "sagemaker_build_packages": ["build-essential"] + (
            ["python3-dev", "python3-pip"] if final_base.python is None else []),
        "toolkit_pin": next((p for p in packages if p.startswith("sagemaker-training==")), None),
        "labels": _labels(spec, variant),
        "image_env": {"schema_version": 1, "framework": spec.framework, "variant": variant,
                      "profile": spec.profile, "versions": versions, "env": env,
                      "start_defaults": defaults,
                      "ofi_nccl_libdir": ofi_libdir,
                      "gpu_archs": spec.gpu_archs,
                      "instance_types": spec.instance_types,
                      "absent": sorted(name for name in table if not comps.get(name))},
    }


def render_dockerfile(values: dict[str, Any]) -> str:
    import jinja2  # host-side dependency (efakit[build])

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    name = f"{values['framework']}.Dockerfile.j2"
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        raise RenderError(f"no template {name} in {TEMPLATES_DIR} for framework "
                          f"{values['framework']!r}: add one to render this spec") from None
    return template.render(**values)


def _copy_sources(dest: Path) -> None:
    for name in VERIFIER_SOURCES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)


def _normalise(root: Path) -> None:
    """Fixed mtimes and modes, so the same inputs give a byte-identical context."""
    for path in [root, *sorted(root.rglob("*"))]:
        os.chmod(path, 0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
        os.utime(path, (0, 0), follow_symlinks=False)


MARKER = ".efakit-render"


def _is_render(directory: Path) -> bool:
    """Written by efakit render: its marker, or (renders before the marker) exactly the
    three entries a render writes, with the image's env record."""
    return (directory / MARKER).is_file() or (
        {p.name for p in directory.iterdir()} == {"Dockerfile", "efakit", "artifacts"}
        and (directory / "efakit" / "image-env.json").is_file())


def _check_target(out_dir: Path) -> None:
    """Refuse to replace anything but an earlier efakit render: `-o .` or a directory of
    the user's must never be wiped."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise RenderError(f"{out_dir} exists and is not a directory: choose a new or empty "
                          "directory for the build context")
    ancestor = out_dir.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RenderError(f"cannot write the build context to {out_dir}: {ancestor} is not a "
                          "directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _is_render(out_dir):
        raise RenderError(f"refusing to replace {out_dir}: it is not empty and not an earlier "
                          f"efakit render (no {MARKER}); choose a new or empty directory")


def render_context(spec: Spec, variant: str, out_dir: Path) -> Path:
    """Write the build context to `out_dir`: a new directory, or one an earlier render wrote
    (replaced whole by a rename, never half-written, never anything of the user's)."""
    values = context_values(spec, variant)
    dockerfile = render_dockerfile(values)
    out_dir = Path(out_dir)
    _check_target(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise RenderError(f"cannot write the build context to {out_dir}: "
                          f"{exc.strerror or exc}") from None
    old = None
    try:
        (tmp / MARKER).write_text("A build context written by efakit render; the next render "
                                  "replaces this directory whole.\n", encoding="utf-8")
        (tmp / "Dockerfile").write_text(dockerfile, encoding="utf-8")
        files = tmp / "efakit"
        (files / "src").mkdir(parents=True)
        for script in ("fetch-artifact.sh", "verify-signature.sh", "entrypoint.sh", "with-ca.sh",
                       "strip-tree.sh"):
            shutil.copy2(TEMPLATES_DIR / "files" / script, files / script)
            os.chmod(files / script, 0o755)
        (files / "image-env.json").write_text(
            json.dumps(values["image_env"], indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _copy_sources(files / "src")
        (tmp / "artifacts").mkdir()
        (tmp / "artifacts" / "README").write_text(
            "Artifact mirror: efakit build copies the mirror's files here; the build checks\n"
            "each against the spec's pin before use.\n", encoding="utf-8")
        _normalise(tmp)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            out_dir.rename(old / "context")
        tmp.rename(out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out_dir.exists():
            (old / "context").rename(out_dir)  # put the earlier render back
        raise RenderError(f"cannot write the build context to {out_dir}: "
                          f"{exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out_dir
