"""Detect the instance type a container runs on, and say how it was known.

Order: an explicit EFAKIT_INSTANCE_TYPE, SageMaker's resource config, EC2
instance metadata (IMDSv2, short timeouts), then the GPU model through NVML.
Each source that answers is named in the result, because a verdict must name
its evidence.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from verify.boundary.files import within
from verify.boundary.values import printable
from verify.profiles import Profile, UnknownInstance, candidates_for_gpu, resolve
from verify.tables import load_json_file

SM_RESOURCE_CONFIG = "/opt/ml/input/config/resourceconfig.json"
IMDS_DEFAULT = "http://169.254.169.254"


@dataclass(frozen=True)
class Detection:
    """The detected profile (None if unknown) and the evidence behind it."""

    profile: Profile | None
    source: str
    detail: str
    candidates: tuple[Profile, ...] = ()


def from_env() -> Detection | None:
    value = os.environ.get("EFAKIT_INSTANCE_TYPE")
    if not value:
        return None
    return Detection(resolve(value), "EFAKIT_INSTANCE_TYPE", value)


def from_sagemaker(path: str | None = None) -> Detection | None:
    path = path or os.environ.get("EFAKIT_SM_RESOURCE_CONFIG", SM_RESOURCE_CONFIG)
    try:
        config = load_json_file(path)
    except ValueError:  # TableError: missing, unreadable, not a file, not JSON
        return None
    name = config.get("current_instance_type") if isinstance(config, dict) else None
    if not name:
        return None
    if not isinstance(name, str):
        return Detection(None, "sagemaker-resource-config",
                         f"{path}: current_instance_type {name!r} is not a string")
    try:
        return Detection(resolve(name), "sagemaker-resource-config", f"{path}: {name}")
    except UnknownInstance:
        return Detection(None, "sagemaker-resource-config", f"{path}: {name} (no profile)")


# The whole lookup (token and instance type), not each read: a per-read timeout lets an
# endpoint that answers one byte every 0.3 s hold every container start forever.
IMDS_DEADLINE_S = 2.0
_HTTP_ENDPOINT = re.compile(r"http://[A-Za-z0-9.:\[\]-]+")
# An instance type is ~20 bytes and a token ~60: more is not IMDS.
IMDS_MAX_BYTES = 4096


def _imds_instance_type(endpoint: str, timeout: float) -> str:
    token_req = urllib.request.Request(
        f"{endpoint}/latest/api/token", method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    with urllib.request.urlopen(token_req, timeout=timeout) as resp:
        token = resp.read(IMDS_MAX_BYTES).decode()
    req = urllib.request.Request(f"{endpoint}/latest/meta-data/instance-type",
                                 headers={"X-aws-ec2-metadata-token": token})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read(IMDS_MAX_BYTES).decode().strip()


def from_imds(endpoint: str | None = None, timeout: float = 0.5,
              deadline: float = IMDS_DEADLINE_S) -> Detection | None:
    """EC2 instance metadata (IMDSv2): each connection waits `timeout`, the whole
    lookup at most `deadline` seconds (files.within)."""
    if os.environ.get("EFAKIT_IMDS", "on") == "off":
        return None
    endpoint = (endpoint or os.environ.get("EFAKIT_IMDS_ENDPOINT", IMDS_DEFAULT)).rstrip("/")
    if not _HTTP_ENDPOINT.fullmatch(endpoint):  # urllib would also open file:// and ftp://
        return None
    try:
        name = within(deadline, lambda: _imds_instance_type(endpoint, timeout))
    except (OSError, urllib.error.URLError, ValueError):  # TimeoutError is an OSError
        return None
    try:
        return Detection(resolve(name), "ec2-metadata", printable(name))
    except UnknownInstance:
        return Detection(None, "ec2-metadata", f"{printable(name)} (no profile)")


def gpu_model() -> str | None:
    """The first GPU's name through NVML, or None without NVML or a GPU."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() < 1:
                return None
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
            return name.decode() if isinstance(name, bytes) else str(name)
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None


def from_gpu(model: str | None = None) -> Detection | None:
    model = model if model is not None else gpu_model()
    if not model:
        return None
    hits = candidates_for_gpu(model)
    if len(hits) == 1:
        return Detection(hits[0], "gpu-model", model)
    return Detection(None, "gpu-model", model, tuple(hits))


def detect() -> Detection:
    """The first source that names the instance; `Detection(None, 'none', ...)` if none."""
    for probe in (from_env, from_sagemaker, from_imds, from_gpu):
        found = probe()
        if found is not None:
            return found
    return Detection(None, "none", "no EFAKIT_INSTANCE_TYPE, SageMaker config, EC2 metadata or GPU")
