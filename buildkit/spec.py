"""Load and validate image specs (`images/<framework>.yaml`).

Every problem is one line naming the file, the key path and the expected form,
because a spec is the single source of truth for every pin: a typo here would
otherwise surface as a wrong image weeks later.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildkit import schemas
from verify import envrules
from verify.components import components as component_table
from verify.profiles import UnknownInstance, known_archs, resolve
from verify.tables import TableError, load_yaml_file
from verify.versions import VersionError, parse_version

# Every pattern here is used with fullmatch: `re.match(r"...$")` accepts a final newline,
# which would then break the Dockerfile line the value is written into.
DIGEST_RES = {"sha256": re.compile(r"[0-9a-f]{64}"), "sha512": re.compile(r"[0-9a-f]{128}"),
              "tree": re.compile(r"[0-9a-f]{40}")}
# The kinds of pin a download may carry, the content pin first.
PIN_KINDS = ("tree", "sha512", "sha256")
FINGERPRINT_RE = re.compile(r"[0-9A-F]{40}")
DISTRO_RE = re.compile(r"ubuntu[0-9]{2}\.[0-9]{2}|debian[0-9]{2}|al2023")
VARIANTS = ("ec2", "sagemaker")
NCCL_POLICIES = ("keep", "pinned")

# Structure and types (top-level keys, profiles, bases) are the JSON Schema's
# (buildkit/schema/spec.schema.json), checked first; the rules below are across keys.
# Per component: allowed keys and their types.  Which components exist, and how
# each may be provided (`source`), is the component table's.
DOWNLOAD = {"version": str, "source": str, "url": str, "file": str,
            "sha256": (str, type(None)), "sha512": str, "tree": str, "reason": str,
            "provenance": str}
EXTRA_KEYS: dict[str, dict[str, Any]] = {
    "efa_installer": {"signature": dict, "bundles": dict},
    "nccl": {"policy": str},
}
SIGNATURE_KEYS = {"url": str, "key_url": str, "key_fingerprint": (str, type(None)), "reason": str}
BUNDLE_KEYS = {"libfabric": str, "rdma_core": str, "openmpi": str, "aws_ofi_nccl": str,
               "provenance": str}


class SpecError(ValueError):
    """A spec problem, already phrased as one line."""


def _type_name(expected: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false",
             list: "a list", dict: "a mapping", type(None): "null"}
    if isinstance(expected, tuple):
        return " or ".join(names[t] for t in expected)
    return names[expected]


@dataclass
class Spec:
    """A validated spec with one profile applied and one base chosen."""

    path: Path
    framework: str
    profile: str | None
    base_name: str
    base: dict[str, Any]
    components: dict[str, dict[str, Any]]
    gpu_archs: list[str]
    instance_types: list[str]
    variants: dict[str, dict[str, Any]]
    mirror: str | None
    size_budget_GB: float
    gate_policy: str
    env_extra: dict[str, str]

    def versions(self) -> dict[str, str | None]:
        """Component versions as the env rules know them."""
        comps = self.components
        ofi = comps.get("aws_ofi_nccl") or {}
        installer = comps.get("efa_installer") or {}
        libfabric = (comps.get("libfabric") or {}).get("version") or \
            (installer.get("bundles") or {}).get("libfabric")
        return {
            "aws_ofi_nccl": ofi.get("version"),
            "aws_ofi_nccl_source": ofi.get("source"),
            "libfabric": libfabric,
            "nccl": (comps.get("nccl") or {}).get("version"),
            "efa_installer": installer.get("version"),
            "cuda": self.base.get("cuda"),
        }

    def packages(self, variant: str) -> list[str]:
        """The pip packages a variant adds (a variant may be declared with no body)."""
        return (self.variants.get(variant) or {}).get("packages") or []

    def distro_family(self) -> str:
        """`ubuntu`, `debian` or `al2023`: decides lib dirs and package tools."""
        match = re.match(r"[a-z]+", self.base["distro"])
        return match.group(0) if match else self.base["distro"]


class _Checker:
    """Collects the first problem as `file: key.path: message`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> None:
        raise SpecError(f"{self.path}: {key}: {message}")

    def keys(self, key: str, value: Any, allowed: dict[str, Any] | set[str]) -> None:
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {type(value).__name__}")
        for name in value:
            if name not in allowed:
                known = ", ".join(sorted(allowed))
                self.fail(f"{key}.{name}" if key else name, f"unknown key (known: {known})")
        if isinstance(allowed, dict):
            for name, expected in allowed.items():
                if name in value and not isinstance(value[name], expected):
                    got = type(value[name]).__name__
                    self.fail(f"{key}.{name}" if key else name,
                              f"expected {_type_name(expected)}, got {got}")

    def version(self, key: str, value: Any) -> None:
        try:
            parse_version(str(value))
        except VersionError:
            self.fail(key, f"malformed version {value!r} (expected digits and dots, e.g. 1.14.2)")
        if not re.fullmatch(r"v?[0-9]+(\.[0-9]+)*([.+~-]?[0-9A-Za-z.+~-]*)", str(value)):
            self.fail(key, f"malformed version {value!r} (expected digits and dots, e.g. 1.14.2)")


def _merge_profile(raw: dict[str, Any], profile: str | None, check: _Checker) -> dict[str, Any]:
    if profile is None:
        return raw
    profiles = raw.get("profiles") or {}
    if profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        check.fail("profiles", f"no profile {profile!r} (known: {known})")
    overlay = profiles[profile]
    merged = copy.deepcopy(raw)
    for key, value in overlay.items():
        if key == "why":
            continue
        if key == "components":
            for name, comp in value.items():
                if comp is None:
                    merged["components"].pop(name, None)
                else:
                    merged["components"][name] = comp
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_download(check: _Checker, key: str, comp: dict[str, Any]) -> None:
    """A download is pinned by one digest (sha256, sha512 or content tree), each with its
    provenance, or has `sha256: null` with the reason it is not known yet."""
    if "version" not in comp:
        check.fail(f"{key}.version", "missing")
    check.version(f"{key}.version", comp["version"])
    if "url" not in comp:
        return
    if not str(comp["url"]).startswith("https://"):
        check.fail(f"{key}.url", f"expected an https:// URL, got {comp['url']!r}")
    name = comp.get("file", str(comp["url"]).rsplit("/", 1)[-1])
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
        check.fail(f"{key}.file", f"{name!r} is not a plain file name")
    pins = [kind for kind in DIGEST_RES if kind in comp]
    if not pins:
        check.fail(f"{key}.sha256", "missing (pin sha256, sha512 or tree; or sha256: null "
                   "with a reason if not known yet)")
    if len(pins) > 1:
        check.fail(key, f"pinned twice ({', '.join(pins)}): keep the one its publisher "
                   "published")
    kind = pins[0]
    digest = comp[kind]
    if digest is None:
        if not comp.get("reason"):
            check.fail(f"{key}.reason", "required when sha256 is null (say why it is unknown)")
    elif not isinstance(digest, str) or not DIGEST_RES[kind].fullmatch(digest):
        width = {"sha256": 64, "sha512": 128, "tree": 40}[kind]
        check.fail(f"{key}.{kind}", f"expected {width} lowercase hex digits, got {digest!r}")
    elif not comp.get("provenance"):
        check.fail(f"{key}.provenance", f"required with a {kind} (where was it published?)")


def _check_components(check: _Checker, comps: dict[str, Any]) -> None:
    table = component_table()
    check.keys("components", comps, set(table))
    for name, comp in comps.items():
        key = f"components.{name}"
        check.keys(key, comp, {**DOWNLOAD, **EXTRA_KEYS.get(name, {})})
        _check_download(check, key, comp)
        source = comp.get("source")
        allowed = [s for s in table[name].sources if s != "wheel"]
        if name in ("efa_installer", "nccl"):
            continue
        if source not in allowed:
            check.fail(f"{key}.source", f"expected one of {', '.join(allowed)}, got {source!r}")
        if source in ("archive", "release") and "url" not in comp:
            check.fail(f"{key}.url", f"required when source is {source}")
        if source == "archive" and "tree" not in comp and comp.get("sha256", "") is not None:
            check.fail(f"{key}.tree", "a source archive is pinned by its content tree id")
        if source == "installer" and not comps.get("efa_installer"):
            check.fail(f"{key}.source", "an installer-bundled component needs "
                       "components.efa_installer")
    installer = comps.get("efa_installer")
    if installer:
        if "signature" in installer:
            sig = installer["signature"]
            check.keys("components.efa_installer.signature", sig, SIGNATURE_KEYS)
            fpr = sig.get("key_fingerprint")
            if fpr is not None and not FINGERPRINT_RE.fullmatch(fpr):
                check.fail("components.efa_installer.signature.key_fingerprint",
                           f"expected 40 uppercase hex digits, got {fpr!r}")
            if fpr is None and not sig.get("reason"):
                check.fail("components.efa_installer.signature.reason",
                           "required when key_fingerprint is null")
        bundles = installer.get("bundles") or {}
        check.keys("components.efa_installer.bundles", bundles, BUNDLE_KEYS)
        for lib in ("libfabric", "rdma_core", "openmpi", "aws_ofi_nccl"):
            if lib in bundles:
                check.version(f"components.efa_installer.bundles.{lib}", bundles[lib])
    nccl = comps.get("nccl")
    if nccl and nccl.get("policy") not in NCCL_POLICIES:
        check.fail("components.nccl.policy",
                   f"expected one of {', '.join(NCCL_POLICIES)}, got {nccl.get('policy')!r}")
    if nccl and nccl.get("policy") == "pinned" and "url" not in nccl:
        check.fail("components.nccl.url", "required when policy is pinned")
    if not installer and not (comps.get("rdma_core") and comps.get("libfabric")):
        check.fail("components", "needs efa_installer, or rdma_core and libfabric built from "
                   "source")


def _check_base(check: _Checker, base: Any) -> tuple[str, dict[str, Any]]:
    choices = base.get("choices") or {}
    default = base.get("default")
    if default not in choices:
        check.fail("base.default", f"{default!r} is not one of base.choices "
                   f"({', '.join(choices) or 'none'})")
    for name, choice in choices.items():
        key = f"base.choices.{name}"
        for required in ("image", "distro", "python"):
            if required not in choice:
                check.fail(f"{key}.{required}", "missing")
        if not DISTRO_RE.fullmatch(choice["distro"]):
            check.fail(f"{key}.distro", f"cannot classify distro {choice['distro']!r} "
                       "(expected ubuntuNN.NN, debianNN or al2023)")
        if choice.get("cuda") is not None:
            check.version(f"{key}.cuda", choice["cuda"])
        if ":" not in choice["image"].rsplit("/", 1)[-1] and "@sha256:" not in choice["image"]:
            check.fail(f"{key}.image", f"{choice['image']!r} has no tag or digest "
                       "(pin the base: name:tag or name@sha256:...)")
    return default, choices[default]


def load_spec(path: Path | str, profile: str | None = None, base: str | None = None) -> Spec:
    """Read, merge `profile`, choose `base`, and validate; raise SpecError on the first problem."""
    path = Path(path)
    check = _Checker(path)
    try:
        raw = load_yaml_file(path)
    except TableError as exc:
        raise SpecError(str(exc)) from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    try:
        schemas.check(raw, "buildkit", "spec.schema.json", str(path))
    except schemas.SchemaError as exc:
        raise SpecError(str(exc)) from None
    if raw["framework"] != path.stem:
        check.fail("framework", f"{raw['framework']!r} does not match the file name {path.stem!r}")
    merged = _merge_profile(raw, profile, check)
    base_name, base_choice = _check_base(check, merged["base"])
    if base is not None:
        choices = merged["base"]["choices"]
        if base not in choices:
            check.fail("base.choices", f"no base {base!r} (known: {', '.join(choices)})")
        base_name, base_choice = base, choices[base]
    _check_components(check, merged["components"])
    archs = merged["gpu_archs"]
    if not isinstance(archs, list):
        check.fail("gpu_archs", "expected a list")
    known = known_archs()
    for arch in archs:
        if arch not in known:
            check.fail("gpu_archs", f"unknown arch {arch!r} (known: {', '.join(sorted(known))})")
    instance_types = []
    for name in merged.get("instance_types") or []:
        try:
            prof = resolve(str(name))
        except UnknownInstance as exc:
            check.fail("instance_types", str(exc))
        if archs and prof.arch not in archs:
            check.fail("instance_types", f"{prof.name} needs {prof.arch}, not in gpu_archs")
        instance_types.append(prof.name)
    variants = merged["variants"]
    check.keys("variants", variants, set(VARIANTS))
    for name, body in variants.items():
        check.keys(f"variants.{name}", body or {}, {"why": str, "packages": list,
                                                     "provenance": str})
    check.keys("artifacts", merged["artifacts"], {"mirror": (str, type(None))})
    budget = merged["size_budget_GB"]
    if isinstance(budget, bool) or budget <= 0:
        check.fail("size_budget_GB", f"expected a positive number, got {budget!r}")
    env_extra = merged.get("env_extra") or {}
    check.keys("env_extra", env_extra, {k: str for k in env_extra})
    for name in env_extra:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            check.fail(f"env_extra.{name}", "not an environment variable name")
    spec = Spec(
        path=path, framework=raw["framework"], profile=profile, base_name=base_name,
        base=base_choice, components=merged["components"], gpu_archs=list(archs),
        instance_types=instance_types, variants=variants,
        mirror=merged["artifacts"].get("mirror"), size_budget_GB=float(budget),
        gate_policy=merged["gate_policy"], env_extra=dict(env_extra),
    )
    for problem in envrules.forbidden(spec.versions(), spec.gpu_archs):
        check.fail("components", f"forbidden combination: {problem}")
    return spec


def spec_path(framework: str, images_dir: Path) -> Path:
    """`images/<framework>.yaml`, with a clear error when it does not exist."""
    if not re.fullmatch(r"[a-z0-9_-]+", framework):
        raise SpecError(f"framework {framework!r}: expected lowercase letters, digits, - or _")
    path = images_dir / f"{framework}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in images_dir.glob("*.yaml"))) or "none"
        raise SpecError(f"no image spec for framework {framework!r} in {images_dir} "
                        f"(known: {known})")
    return path
