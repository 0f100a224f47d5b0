"""efa-verify static on the parts the full stack adds: nccl-tests' GPU archs read from
the fatbin, the libnccl.so.2 they resolve, the plugin's exact version, and a
source-built stack without the EFA installer.  Real ELF files, built here by gcc
from a few lines of C (no third-party code)."""

import json
import os
import struct

import pytest

from tests import procs
from tests.test_static import MODERN, _so, _static, needs_gcc
from verify import elf

ARCH_80_90_100 = ["sm_80", "sm_90", "sm_100"]


def fatbin(entries: list[tuple[int, int]]) -> bytes:
    """A fatbin container as nvcc lays it out: (kind, sm) entries, 1 = PTX, 2 = cubin."""
    body = b""
    for kind, sm in entries:
        header = bytearray(64)
        struct.pack_into("<HHIQ", header, 0, kind, 0x0101, 64, 16)
        struct.pack_into("<I", header, 28, sm)
        body += bytes(header) + bytes(16)
    return struct.pack("<IHHQ", elf.FATBIN_MAGIC, 1, 16, len(body)) + body


def _c_bytes(data: bytes) -> str:
    return ", ".join(str(b) for b in data)


def _binary(path, blob: bytes, libdirs=(), libs=()):
    """An executable with a .nv_fatbin section, linked to `libs`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".c")
    src.write_text('__attribute__((section(".nv_fatbin"), used)) const unsigned char fb[] = {'
                   + _c_bytes(blob) + "};\nint main(void) { return 0; }\n")
    cmd = ["gcc", "-Wl,--no-as-needed", "-o", str(path), str(src)]
    cmd += [f"-L{d}" for d in libdirs] + [f"-l{lib}" for lib in libs]
    procs.run(cmd, check=True, capture_output=True)
    src.unlink()


def _stack(tmp_path, archs=ARCH_80_90_100, absent=("efa_installer",), ofi="1.21.1",
           nccl="2.29.7", mpi=True):
    """A tree shaped like the offline image: plugin, one NCCL, nccl-tests over MPI."""
    root = tmp_path / "root"
    record = {"schema_version": 1, "versions": {**MODERN, "aws_ofi_nccl": "1.21.1",
                                                "nccl": "2.29.7"},
              "env": {}, "ofi_nccl_libdir": "/opt/amazon/ofi-nccl/lib",
              "gpu_archs": ARCH_80_90_100, "absent": list(absent)}
    (root / "etc/efakit").mkdir(parents=True)
    (root / "etc/efakit/image-env.json").write_text(json.dumps(record))
    _so(root / "opt/amazon/ofi-nccl/lib/libnccl-net.so",
        f'const char v[] = "NET/OFI Initializing aws-ofi-nccl {ofi}";\n')
    nccl_dir = root / "opt/nccl/lib"
    _so(nccl_dir / "libnccl.so.2", f'const char v[] = "NCCL version {nccl}+cuda13.0";\n')
    (nccl_dir / "libnccl.so").symlink_to("libnccl.so.2")
    _so(tmp_path / "mpi" / "libmpi.so", "int MPI_Init(void) { return 0; }\n")
    blob = fatbin([(2, int(a[3:])) for a in archs] + [(1, 100)])
    for name in ("all_reduce_perf", "all_gather_perf"):
        _binary(root / "opt/nccl-tests" / name, blob, (nccl_dir, tmp_path / "mpi"),
                ("nccl", "mpi") if mpi else ("nccl",))
    return root


ENV = {"LD_LIBRARY_PATH": "/opt/amazon/ofi-nccl/lib:/opt/nccl/lib"}


def test_fatbin_archs_are_read_from_the_headers(tmp_path):
    if not __import__("shutil").which("gcc"):
        pytest.skip("gcc: not installed")
    _binary(tmp_path / "b", fatbin([(2, 80), (2, 90), (1, 90), (2, 80)]))
    assert elf.fatbin_archs(tmp_path / "b") == {"sass": {"sm_80", "sm_90"}, "ptx": {"sm_90"}}


def test_no_fatbin_means_no_gpu_code(tmp_path):
    _so(tmp_path / "libplain.so", "int f(void) { return 0; }\n")
    assert elf.fatbin_archs(tmp_path / "libplain.so") == {"sass": set(), "ptx": set()}


@needs_gcc
def test_the_full_stack_passes_every_check_it_makes(tmp_path):
    code, checks = _static(_stack(tmp_path), ENV)
    for name in ("plugin", "nccl_single", "nccl_version", "nccl_tests", "nccl_tests_archs",
                 "nccl_tests_nccl"):
        assert checks[name]["status"] == "pass", (name, checks[name]["message"])
    assert "sm_100, sm_80, sm_90" in checks["nccl_tests_archs"]["message"]
    installer = checks["efa_installer"]
    assert installer["status"] == "skip" and "pinned sources" in installer["message"]


@needs_gcc
def test_a_missing_arch_fails_naming_the_binary_and_the_arch(tmp_path):
    _, checks = _static(_stack(tmp_path, archs=["sm_80", "sm_90"]), ENV)
    archs = checks["nccl_tests_archs"]
    assert archs["status"] == "fail"
    assert "all_reduce_perf: sm_100" in archs["message"]
    # PTX for sm_100 is not SASS: the check asks for code that runs without a JIT.
    assert any("SASS sm_80,sm_90" in e["text"] for e in archs["evidence"])


@needs_gcc
def test_a_second_libnccl_fails_both_nccl_checks(tmp_path):
    root = _stack(tmp_path)
    _so(root / "usr/lib/x86_64-linux-gnu/libnccl.so.2",
        'const char v[] = "NCCL version 2.18.3+cuda12.2";\n')
    _, checks = _static(root, {"LD_LIBRARY_PATH": "/opt/amazon/ofi-nccl/lib:/opt/nccl/lib"})
    assert checks["nccl_single"]["status"] == "fail"
    assert checks["nccl_tests_nccl"]["status"] == "fail"
    assert "2 copies" in checks["nccl_tests_nccl"]["message"]


@needs_gcc
def test_nccl_tests_that_resolve_no_libnccl_fail(tmp_path):
    root = _stack(tmp_path)
    os.unlink(root / "opt/nccl/lib/libnccl.so.2")
    _so(root / "opt/other/libnccl.so.2", 'const char v[] = "NCCL version 2.29.7+cuda13.0";\n')
    _, checks = _static(root, {"LD_LIBRARY_PATH": "/opt/amazon/ofi-nccl/lib"})
    nccl = checks["nccl_tests_nccl"]
    assert nccl["status"] == "fail" and "no libnccl.so.2" in nccl["message"]


@needs_gcc
@pytest.mark.parametrize("found", ["1.21.10", "1.20.1", "1.2.1"])
def test_a_plugin_of_another_release_fails(tmp_path, found):
    _, checks = _static(_stack(tmp_path, ofi=found), ENV)
    assert checks["plugin"]["status"] == "fail" and found in checks["plugin"]["message"]


@needs_gcc
@pytest.mark.parametrize("found", ["1.21.1", "v1.21.1", "1.21.1-aws", "1.21.1aws"])
def test_the_spec_release_passes_in_every_spelling(tmp_path, found):
    _, checks = _static(_stack(tmp_path, ofi=found), ENV)
    assert checks["plugin"]["status"] == "pass"


@needs_gcc
def test_an_absent_plugin_and_tests_fail_by_their_label(tmp_path):
    root = _stack(tmp_path, absent=("efa_installer", "aws_ofi_nccl", "nccl_tests"))
    _, checks = _static(root, ENV)
    assert checks["plugin"]["status"] == "fail" and "aws-ofi-nccl is absent" in \
        checks["plugin"]["message"]
    assert checks["nccl_tests"]["status"] == "fail" and "nccl-tests is absent" in \
        checks["nccl_tests"]["message"]
    assert checks["nccl_tests_archs"]["status"] == "skip"


@needs_gcc
def test_an_nccl_of_another_version_than_the_record_fails(tmp_path):
    _, checks = _static(_stack(tmp_path, nccl="2.28.3"), ENV)
    version = checks["nccl_version"]
    assert version["status"] == "fail"
    assert "2.28.3+cuda13.0" in version["message"] and "2.29.7" in version["message"]


@needs_gcc
def test_nccl_tests_built_without_mpi_fail(tmp_path):
    _, checks = _static(_stack(tmp_path, mpi=False), ENV)
    tests = checks["nccl_tests"]
    assert tests["status"] == "fail" and "not linked to MPI (MPI=1 missing)" in tests["message"]


@needs_gcc
@pytest.mark.parametrize("marker, status", [("FI_EFA_TX_SIZE", "pass"), ("FI_TCP_IFACE", "fail")])
def test_libfabric_needs_the_efa_provider_compiled_in(tmp_path, marker, status):
    """The efa provider registers FI_EFA_* parameters; a libfabric without them has none."""
    root = _stack(tmp_path)
    _so(root / "opt/amazon/efa/lib/libfabric.so.1", f'const char p[] = "{marker}";\n')
    _, checks = _static(root, {"LD_LIBRARY_PATH": ENV["LD_LIBRARY_PATH"] + ":/opt/amazon/efa/lib"})
    assert checks["libfabric"]["status"] == "pass"
    assert checks["libfabric_efa"]["status"] == status
