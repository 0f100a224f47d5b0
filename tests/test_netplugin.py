"""Which net plugin NCCL opens (NVIDIA/nccl v2.29.7-1 rules), and the dlopen targets of the
plugin and libfabric, checked by `efa-verify static` on hand-made trees (issue 25)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import procs
from verify import netplugin

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc: not installed")
VERSIONS = {"aws_ofi_nccl": "1.21.1", "aws_ofi_nccl_source": "installer",
            "libfabric": "2.6.0", "nccl": "2.29.7", "efa_installer": "1.50.0", "cuda": "13.0"}
LIBDIR = "opt/amazon/ofi-nccl/lib"


def test_unset_opens_only_the_default_name():
    assert netplugin.entries(None) == [["libnccl-net.so"]]


@pytest.mark.parametrize("value,expected", [
    ("ofi", [["ofi", "libnccl-net-ofi.so"]]),
    ("libnccl-net-ofi.so", [["libnccl-net-ofi.so"]]),
    ("/opt/x/libnccl-net.so", [["/opt/x/libnccl-net.so"]]),
    ("NONE", []), ("", []),
    ("ofi,aws", [["ofi", "libnccl-net-ofi.so"], ["aws", "libnccl-net-aws.so"]]),
    ("lib", [["lib", "libnccl-net-lib.so"]]),
])
def test_names_nccl_tries(value, expected):
    assert netplugin.entries(value) == expected


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="abcnoel-_./,", max_size=20))
def test_names_follow_nccl_rules(value):
    """Every entry is first tried as given; the prefixed name is added exactly when NCCL's
    condition holds (no '/', not already lib*.so)."""
    names = [n for n in value.split(",") if n] if value.lower() != "none" else []
    entries = netplugin.entries(value)
    assert [e[0] for e in entries] == names
    for name, entry in zip(names, entries, strict=True):
        plain = "/" not in name and not (name.startswith("lib") and name.endswith(".so"))
        assert entry[1:] == ([f"libnccl-net-{name}.so"] if plain else [])


def _so(path, source, *link):
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".c")
    src.write_text(source)
    procs.run(["gcc", "-shared", "-fPIC", "-Wl,--no-as-needed", "-o", str(path), str(src),
               *link], check=True, capture_output=True)
    src.unlink()


def _image(tmp_path, plugin_names=("libnccl-net.so",), cudart=True, gdr=True):
    root = tmp_path / "root"
    (root / "etc/efakit").mkdir(parents=True)
    (root / "etc/efakit/image-env.json").write_text(json.dumps(
        {"schema_version": 1, "versions": VERSIONS, "env": {},
         "ofi_nccl_libdir": "/" + LIBDIR, "absent": []}))
    for name in plugin_names:
        _so(root / LIBDIR / name, 'const char v[] = "aws-ofi-nccl 1.21.1";\n')
    _so(root / "opt/amazon/efa/lib/libfabric.so.1", "int fi_getinfo(void) { return 0; }\n")
    if cudart:
        _so(root / "usr/local/cuda/lib64/libcudart.so", "int cudaFree(void) { return 0; }\n")
    if gdr:
        _so(root / "opt/gdrcopy/lib/libgdrapi.so", "int gdr_open(void) { return 0; }\n")
    (root / "etc/ld.so.conf.d").mkdir(parents=True)
    (root / "etc/ld.so.conf.d/efakit.conf").write_text(
        "/usr/local/cuda/lib64\n/opt/gdrcopy/lib\n")
    return root


def _static(root, **env):
    """static --root ROOT with `env` as the image's ENV (its record's; --root judges
    the image's environment, never the caller's)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FI_", "NCCL_"))}
    record_path = root / "etc/efakit/image-env.json"
    record = json.loads(record_path.read_text())
    record["env"] = {"LD_LIBRARY_PATH": f"/{LIBDIR}:/opt/amazon/efa/lib", **env}
    record_path.write_text(json.dumps(record))
    proc = procs.run([sys.executable, "-m", "verify", "static", "--root", str(root), "--json"],
                     capture_output=True, text=True, env=environ, timeout=120)
    assert proc.returncode in (0, 1, 3), proc.stderr
    return {c["name"]: c for c in json.loads(proc.stdout)["checks"]}


@needs_gcc
def test_the_ngc_plugin_package_alone_loads_nothing(tmp_path):
    """Finding 9: only libnccl-net-ofi.so (the NGC package) and NCCL_NET_PLUGIN unset: the
    old check passed it as "the plugin"; NCCL opens libnccl-net.so and finds none."""
    root = _image(tmp_path, plugin_names=("libnccl-net-ofi.so",))
    checks = _static(root)
    assert checks["plugin"]["status"] == "fail"
    assert "NCCL would load no net plugin" in checks["plugin"]["message"]
    assert "libnccl-net-ofi.so" in checks["plugin"]["message"]
    assert _static(root, NCCL_NET_PLUGIN="ofi")["plugin"]["status"] == "pass"


@needs_gcc
def test_plugin_found_only_through_the_loader_path(tmp_path):
    """The record's lib dir is no search path: off LD_LIBRARY_PATH and ld.so.conf, NCCL
    cannot open the plugin."""
    root = _image(tmp_path)
    assert _static(root)["plugin"]["status"] == "pass"
    assert _static(root, LD_LIBRARY_PATH="/opt/amazon/efa/lib")["plugin"]["status"] == "fail"


@needs_gcc
def test_none_disables_every_external_plugin(tmp_path):
    checks = _static(_image(tmp_path), NCCL_NET_PLUGIN="none")
    assert checks["plugin"]["status"] == "fail" and "no external plugin" in \
        checks["plugin"]["message"]


@needs_gcc
def test_a_plugin_that_is_not_aws_ofi_nccl_fails(tmp_path):
    root = _image(tmp_path)
    _so(root / "opt/hpcx/sharp/lib/libnccl-net.so", "int sharp(void) { return 0; }\n")
    checks = _static(root, LD_LIBRARY_PATH=f"/opt/hpcx/sharp/lib:/{LIBDIR}:/opt/amazon/efa/lib")
    assert checks["plugin"]["status"] == "fail" and "another plugin shadows" in \
        checks["plugin"]["message"]


@needs_gcc
def test_dlopen_targets_resolve(tmp_path):
    checks = _static(_image(tmp_path))
    assert checks["plugin_dlopen"]["status"] == "pass"
    assert "libcuda.so.1" in checks["plugin_dlopen"]["message"]  # host-provided, listed


@needs_gcc
def test_missing_libcudart_fails_the_dlopen_check(tmp_path):
    """Finding 6: a runtime-only CUDA layout without libcudart.so: nothing links it, so
    only the dlopen check can see it."""
    checks = _static(_image(tmp_path, cudart=False))
    dl = checks["plugin_dlopen"]
    assert dl["status"] == "fail" and "libcudart.so (dlopened by libnccl-net.so" in dl["message"]
    assert "libcudart.so (dlopened by libfabric.so.1" in dl["message"]


@needs_gcc
def test_missing_gdrapi_fails_the_dlopen_check(tmp_path):
    dl = _static(_image(tmp_path, gdr=False))["plugin_dlopen"]
    assert dl["status"] == "fail" and "libgdrapi.so" in dl["message"]
