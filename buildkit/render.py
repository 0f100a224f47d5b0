"""Render a complete, byte-reproducible build context from a validated spec.

Every decision (which components, which lib dirs, which env, which flags) is
made here from the spec and the shared tables; the templates only hold install
steps, so a golden-file diff shows the effect of any decision.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from buildkit.paths import REPO_ROOT, TEMPLATES_DIR
from buildkit.spec import Spec
from verify import __version__, envrules, layout

# Packages every variant needs; grouped by why.
BUILD_TOOLS = ["build-essential", "autoconf", "automake", "libtool", "pkg-config"]
RUNTIME = ["ca-certificates", "curl", "openssh-client", "openssh-server", "hwloc",
           "libhwloc-dev", "pciutils", "python3-dev"]
# Copied into the context so the image carries the verifier and its tables.
VERIFIER_SOURCES = ("pyproject.toml", "README.md", "verify", "buildkit")


class RenderError(RuntimeError):
    """The context could not be written."""


def _artifact(comp: dict[str, Any] | None, why_absent: str) -> dict[str, Any]:
    if not comp:
        return {"mode": "absent", "why": why_absent}
    url = comp.get("url")
    return {
        "mode": "build" if url else "installer",
        "version": comp["version"],
        "url": url,
        "file": url.rsplit("/", 1)[-1] if url else None,
        "sha256": comp.get("sha256") or "UNPINNED",
    }


def verifier_dependencies() -> list[str]:
    """The plain install's requirements, read from pyproject.toml (the one place they live),
    shell-quoted for the Dockerfile."""
    import shlex

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        return [shlex.quote(d) for d in tomllib.load(handle)["project"]["dependencies"]]


def gencode(archs: list[str]) -> str:
    """NVCC_GENCODE for nccl-tests/NCCL: one SASS target per arch."""
    return " ".join(f"-gencode=arch=compute_{a[3:]},code={a}" for a in archs)


def context_values(spec: Spec, variant: str) -> dict[str, Any]:
    """Everything the templates need, derived from the spec and tables."""
    if variant not in spec.variants:
        raise RenderError(f"variant {variant!r} not in spec (known: {', '.join(spec.variants)})")
    comps = spec.components
    versions = spec.versions()
    distro = spec.distro_family()
    facts = {"distro": distro, "efa_installer": versions["efa_installer"],
             "source": versions["aws_ofi_nccl_source"]}
    mpi_home = layout.lookup("mpi_home", facts)
    mpi_bin = layout.lookup("mpi_bin", facts)
    offline_why = "cannot be obtained offline; the gate reports it missing"

    installer = comps.get("efa_installer")
    if installer:
        efa = dict(_artifact(installer, ""), mode="installer",
                   flags=layout.installer_flags(facts),
                   signature=installer.get("signature"),
                   key_file="aws-efa-installer.key")
    else:
        deb = comps["efa_debian"]
        efa = {"mode": "debian", "packages": deb["packages"], "libfabric": deb["libfabric"]}

    ofi_comp = comps.get("aws_ofi_nccl")
    ofi = _artifact(ofi_comp, offline_why)
    if ofi_comp:
        ofi["mode"] = ofi_comp["source"]
        ofi["libdir"] = layout.lookup("ofi_nccl_libdir", facts)
        if ofi["libdir"] is None:
            raise RenderError(f"layout table has no aws-ofi-nccl lib dir for {distro}")

    nccl_comp = comps.get("nccl") or {"policy": "keep", "version": "unknown"}
    nccl = dict(_artifact(nccl_comp, ""), policy=nccl_comp["policy"],
                provider=nccl_comp.get("provenance", "base image"))

    ngc = spec.base_name == "ngc"
    keep_base_nccl = ngc and nccl["policy"] == "keep"
    cleanup = {
        "paths": ["/opt/hpcx", "/usr/local/mpi"] if ngc else [],
        "packages": ([] if keep_base_nccl else ["libnccl2", "libnccl-dev"])
        + (["ibverbs-providers", "libibverbs1"] if ngc else []),
        "why": "HPC-X and MOFED verbs shadow the EFA installer's rdma-core; a second "
               "libnccl.so.2 makes the NCCL in use depend on link order",
    }

    system_packages = sorted(set(RUNTIME + (BUILD_TOOLS if spec.gpu_archs else [])
                                 + (["gnupg"] if efa.get("signature") else [])))

    image_env = {d.var: d.value for d in envrules.image_env(versions).values() if d.is_set}
    env = {**image_env, **spec.env_extra}
    libdirs = [layout.lookup("libfabric_libdir", facts)]
    if ofi_comp:
        libdirs.insert(0, ofi["libdir"])
    path_prefix = [] if mpi_bin == "/usr/bin" else [mpi_bin]
    if comps.get("nccl_tests"):
        path_prefix.append("/opt/nccl-tests")

    labels = {
        "org.opencontainers.image.title": f"efakit {spec.framework} ({variant})",
        "org.opencontainers.image.base.name": spec.base["image"],
        "dev.efakit.framework": spec.framework,
        "dev.efakit.variant": variant,
        "dev.efakit.profile": spec.profile or "default",
        "dev.efakit.version.torch": spec.base.get("torch") or "none",
        "dev.efakit.version.cuda": spec.base.get("cuda") or "none",
        "dev.efakit.version.efa-installer": versions["efa_installer"] or "absent",
        "dev.efakit.version.libfabric": versions["libfabric"] or "absent",
        "dev.efakit.version.aws-ofi-nccl": versions["aws_ofi_nccl"] or "absent",
        "dev.efakit.version.nccl": versions["nccl"] or "absent",
        "dev.efakit.version.gdrcopy": (comps.get("gdrcopy") or {}).get("version", "absent"),
        "dev.efakit.version.nccl-tests": (comps.get("nccl_tests") or {}).get("version", "absent"),
        "dev.efakit.gpu-archs": ",".join(spec.gpu_archs) or "none",
    }
    mirror_pip = "--no-index --find-links /artifacts/wheels " if spec.mirror else ""
    return {
        "efakit_version": __version__,
        "spec_file": f"images/{spec.path.name}",
        "framework": spec.framework,
        "variant": variant,
        "profile": spec.profile,
        "base_name": spec.base_name,
        "base": spec.base,
        "python": spec.base["python"],
        "mirror": bool(spec.mirror),
        "verifier_deps": verifier_dependencies(),
        "torch_from_pip": bool(spec.base.get("torch_from_pip")),
        "torch_index": "https://download.pytorch.org/whl/cu"
        + "".join(str(spec.base.get("cuda") or "").split(".")[:2]),
        "pip_install": f"efakit-with-ca {spec.base['python']} -m pip install --no-compile "
                       f"{mirror_pip}".rstrip(),
        "system_packages": system_packages,
        "cleanup": cleanup,
        "efa": efa,
        "ofi": ofi,
        "nccl": nccl,
        "gdrcopy": _artifact(comps.get("gdrcopy"), offline_why),
        "nccl_tests": _artifact(comps.get("nccl_tests"), offline_why),
        "gencode": gencode(spec.gpu_archs),
        "mpi_home": mpi_home,
        "mpi_bin": mpi_bin,
        "env_lines": ([f"PATH={':'.join(path_prefix)}:$PATH"] if path_prefix else [])
        + [f"LD_LIBRARY_PATH={':'.join(libdirs)}"]
        + [f"{name}={value}" for name, value in env.items()],
        "cmd": '["train"]' if variant == "sagemaker" else '["/bin/bash"]',
        "labels": labels,
        "image_env": {"schema_version": 1, "framework": spec.framework, "variant": variant,
                      "profile": spec.profile, "versions": versions, "env": env,
                      "ofi_nccl_libdir": ofi.get("libdir"),
                      "instance_types": spec.instance_types,
                      "absent": sorted(k for k in ("aws_ofi_nccl", "gdrcopy", "nccl_tests",
                                                    "efa_installer") if not comps.get(k))},
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
    template = env.get_template(f"{values['framework']}.Dockerfile.j2")
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


def render_context(spec: Spec, variant: str, out_dir: Path) -> Path:
    """Write the build context to `out_dir` (replaced whole, never half-written)."""
    values = context_values(spec, variant)
    dockerfile = render_dockerfile(values)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / "Dockerfile").write_text(dockerfile, encoding="utf-8")
        files = tmp / "efakit"
        (files / "src").mkdir(parents=True)
        for script in ("fetch-artifact.sh", "verify-signature.sh", "entrypoint.sh", "with-ca.sh"):
            shutil.copy2(TEMPLATES_DIR / "files" / script, files / script)
            os.chmod(files / script, 0o755)
        (files / "image-env.json").write_text(
            json.dumps(values["image_env"], indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _copy_sources(files / "src")
        (tmp / "artifacts").mkdir()
        (tmp / "artifacts" / "README").write_text(
            "Artifact mirror: efakit build copies the mirror's files here; the build checks\n"
            "each against the spec's sha256 before use.\n", encoding="utf-8")
        _normalise(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
