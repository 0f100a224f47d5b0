"""efa-verify static against hand-made trees (real ELF files built here) and real images."""

import json
import os
import shutil
import sys

import pytest

from tests import procs
from tests.conftest import CI_EC2

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc: not installed")
MODERN = {"aws_ofi_nccl": "1.14.2", "aws_ofi_nccl_source": "installer", "libfabric": "2.1.0",
          "nccl": "2.21.5", "efa_installer": "1.41.0", "cuda": "12.4"}


def _so(path, source, *libs, libdir=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".c")
    src.write_text(source)
    cmd = ["gcc", "-shared", "-fPIC", "-Wl,--no-as-needed", "-o", str(path), str(src)]
    if libdir:
        cmd += [f"-L{libdir}", *[f"-l{lib}" for lib in libs]]
    procs.run(cmd, check=True, capture_output=True)
    src.unlink()


def _tree(tmp_path, absent=()):
    root = tmp_path / "root"
    record = {"schema_version": 1, "versions": MODERN, "env": {},
              "ofi_nccl_libdir": "/opt/amazon/ofi-nccl/lib", "absent": list(absent)}
    (root / "etc/efakit").mkdir(parents=True)
    (root / "etc/efakit/image-env.json").write_text(json.dumps(record))
    return root


def _static(root, env=None, *extra, caller_env=None):
    """static --root ROOT, `env` being the image's (its record's ENV); the caller's own
    environment (`caller_env` added to it) is never the one judged."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FI_", "NCCL_"))}
    environ.update(caller_env or {})
    record_path = root / "etc/efakit/image-env.json"
    record = json.loads(record_path.read_text())
    record["env"] = dict(env or {})
    record_path.write_text(json.dumps(record))
    proc = procs.run([sys.executable, "-m", "verify", "static", "--root", str(root), "--json", *extra],
                     capture_output=True, text=True, env=environ, timeout=120)
    assert proc.returncode in (0, 1, 3), proc.stderr
    result = json.loads(proc.stdout)
    return proc.returncode, {c["name"]: c for c in result["checks"]}


@needs_gcc
def test_plugin_with_an_unresolved_dependency(tmp_path):
    root = _tree(tmp_path)
    helper = tmp_path / "build" / "libhelper.so"
    _so(helper, "int helper(void) { return 1; }\n")
    plugin = root / "opt/amazon/ofi-nccl/lib/libnccl-net.so"
    _so(plugin, 'const char v[] = "NET/OFI Initializing aws-ofi-nccl 1.14.2";\n'
        "int helper(void); int f(void) { return helper(); }\n", "helper", libdir=helper.parent)
    code, checks = _static(root, {"LD_LIBRARY_PATH": "/opt/amazon/ofi-nccl/lib"})
    assert checks["plugin"]["status"] == "pass" and "1.14.2" in checks["plugin"]["message"]
    deps = checks["plugin_deps"]
    assert deps["status"] == "fail" and "libhelper.so (needed by libnccl-net.so)" in deps["message"]
    assert "fall back to sockets" in deps["message"] and code == 1
    # Put the helper (and the C library every .so needs) where the loader looks.
    shutil.copy(helper, root / "opt/amazon/ofi-nccl/lib/libhelper.so")
    libdir = root / "lib/x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    for name in ("libc.so.6", "ld-linux-x86-64.so.2"):
        for host_dir in ("/lib/x86_64-linux-gnu", "/lib64"):
            if os.path.exists(f"{host_dir}/{name}"):
                shutil.copy(f"{host_dir}/{name}", libdir / name)
                break
    _, checks = _static(root, {"LD_LIBRARY_PATH": "/opt/amazon/ofi-nccl/lib"})
    assert checks["plugin_deps"]["status"] == "pass"


@needs_gcc
def test_two_nccl_copies_are_each_reported_with_their_version(tmp_path):
    root = _tree(tmp_path)
    for directory, version in (("usr/lib/x86_64-linux-gnu", "2.18.3+cuda12.2"),
                               ("opt/nccl/lib", "2.21.5+cuda12.4")):
        _so(root / directory / "libnccl.so.2", f'const char v[] = "NCCL version {version}";\n')
    code, checks = _static(root, {"LD_LIBRARY_PATH": "/opt/nccl/lib"})
    single = checks["nccl_single"]
    assert single["status"] == "fail" and "2 copies" in single["message"]
    texts = " ".join(e["text"] for e in single["evidence"])
    assert "2.18.3+cuda12.2" in texts and "2.21.5+cuda12.4" in texts
    assert checks["nccl_version"]["status"] == "pass"  # the first on the path is the spec's
    assert code == 1


def test_wrong_env_and_missing_parts_fail_with_reasons(tmp_path):
    root = _tree(tmp_path)
    code, checks = _static(root, {"NCCL_PROTO": "simple", "NCCL_ALGO": "Ring"})
    env = checks["env"]
    assert env["status"] == "fail" and "NCCL_PROTO=simple" in env["message"]
    assert "NCCL_ALGO=Ring" in env["message"]
    assert checks["plugin"]["status"] == "fail" and "not found" in checks["plugin"]["message"]
    assert checks["libfabric"]["status"] == "fail" and checks["ssh"]["status"] == "fail"
    assert "mpirun" not in checks  # nothing is executed for a tree that is not /
    assert code == 1


def test_absent_components_say_so(tmp_path):
    root = _tree(tmp_path, absent=("aws_ofi_nccl", "nccl_tests", "gdrcopy", "efa_installer",
                                   "libfabric", "rdma_core"))
    _, checks = _static(root)
    for name in ("plugin", "nccl_tests", "gdrcopy", "efa_installer"):
        assert checks[name]["status"] == "fail" and "absent" in checks[name]["message"]


def test_missing_image_env_record_is_exit_2(tmp_path):
    proc = procs.run([sys.executable, "-m", "verify", "static", "--root", str(tmp_path)],
                     capture_output=True, text=True)
    assert proc.returncode == 2 and "image env record" in proc.stderr


@pytest.mark.docker
def test_static_passes_every_check_it_makes_in_the_offline_image(ci_images):
    from tests.test_images import DOCKER

    proc = procs.run([DOCKER, "run", "--rm", "-e", "EFAKIT_IMDS=off", CI_EC2,
                      "efa-verify", "static", "--json"], capture_output=True, text=True,
                     timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    result = json.loads(proc.stdout)
    statuses = {c["name"]: c["status"] for c in result["checks"]}
    assert {n for n, s in statuses.items() if s != "pass"} == {"efa_installer"}, statuses
    assert statuses["efa_installer"] == "skip" and result["verdict"] == "pass"
    assert {"plugin", "plugin_deps", "libfabric", "libfabric_efa", "nccl_single",
            "nccl_version", "nccl_tests", "nccl_tests_archs", "nccl_tests_nccl", "gdrcopy",
            "ssh", "env", "mpirun", "torch"} <= set(statuses)


# --- issue #24, attack-1 H-2/H-3: the image tree is untrusted input ---------------------


@pytest.mark.parametrize("where,kind", [
    ("usr/lib/libnccl.so.2", "link-to-/dev/zero"),
    ("usr/lib/libfabric.so.1", "fifo"),
    ("opt/amazon/ofi-nccl/lib/libnccl-net-ofi.so", "fifo"),
    ("usr/lib/libfabric.so.1", "link-to-/dev/urandom"),
    ("usr/lib/libfabric.so.1", "short"),
])
def test_a_library_that_is_no_regular_file_is_one_line_not_a_hang(tmp_path, where, kind):
    """A FIFO blocked open() forever, a link to /dev/zero grew to 6.6 GB in 15 s: every
    library is read through the boundary's reader (regular file, size cap, O_NONBLOCK)."""
    root = _tree(tmp_path)
    lib = root / where
    lib.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(lib)
    elif kind == "short":
        lib.write_bytes(b"\x7fEL")
    else:
        lib.symlink_to(kind.split("-to-")[1])
    proc = procs.run([sys.executable, "-m", "verify", "static", "--root", str(root)],
                     capture_output=True, text=True, timeout=30)
    assert proc.returncode in (1, 2), proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) <= 1
    if proc.returncode == 2:
        assert "not a regular file" in proc.stderr or "ELF" in proc.stderr


# --- attack-2 SA-1, SA-2, W-2..W-6: --root is the image, nothing of the host ------------
FAKE_PLUGIN = b"\x7fELF\x02\x01" + bytes(58) + b"NET/OFI Initializing aws-ofi-nccl 1.14.2\0"
CLIMB = "/.." * 30


def _host_plugin(tmp_path):
    """A plugin file of the spec's version on the host, outside the image's root."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "libnccl-net.so").write_bytes(FAKE_PLUGIN)
    return host


@pytest.mark.parametrize("how", ["plugin-dotdot", "absolute-link", "relative-link-up",
                                 "ld-library-path", "ld-so-conf"])
def test_a_host_file_is_never_the_images_plugin(tmp_path, how):
    root, host = _tree(tmp_path), _host_plugin(tmp_path)
    libdir = root / "usr/lib"
    libdir.mkdir(parents=True)
    env = {}
    if how == "plugin-dotdot":
        env["NCCL_NET_PLUGIN"] = f"{CLIMB}{host}/libnccl-net.so"
    elif how == "absolute-link":
        (libdir / "libnccl-net.so").symlink_to(host / "libnccl-net.so")
    elif how == "relative-link-up":
        (libdir / "libnccl-net.so").symlink_to(f"../..{CLIMB}{host}/libnccl-net.so")
    elif how == "ld-library-path":
        env["LD_LIBRARY_PATH"] = f"{CLIMB}{host}"
    else:
        (root / "etc/ld.so.conf").write_text(f"{CLIMB}{host}\n")
    code, checks = _static(root, env)
    assert checks["plugin"]["status"] == "fail", checks["plugin"]["message"]
    assert "1.14.2" not in checks["plugin"]["message"] and code == 1


def test_an_absolute_link_is_followed_inside_the_root(tmp_path):
    root = _tree(tmp_path)
    (root / "opt/real").mkdir(parents=True)
    (root / "opt/real/libnccl-net.so").write_bytes(FAKE_PLUGIN)
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/libnccl-net.so").symlink_to("/opt/real/libnccl-net.so")
    _, checks = _static(root)
    assert checks["plugin"]["status"] == "pass", checks["plugin"]["message"]
    assert "aws-ofi-nccl 1.14.2" in checks["plugin"]["message"]


def test_root_judges_the_images_environment_not_the_callers(tmp_path):
    root = _tree(tmp_path)
    _, checks = _static(root, {}, caller_env={"FI_EFA_USE_DEVICE_RDMA": "0",
                                              "NCCL_PROTO": "simple"})
    assert checks["env"]["status"] == "pass", checks["env"]["message"]
    _, checks = _static(root, {"NCCL_PROTO": "simple"})
    assert checks["env"]["status"] == "fail" and "NCCL_PROTO=simple" in checks["env"]["message"]


@pytest.mark.parametrize("kind", ["not-elf", "directory", "name-too-long", "dotdot-dir"])
def test_an_unloadable_plugin_is_a_failed_check_not_bad_input(tmp_path, kind):
    root = _tree(tmp_path)
    libdir = root / "usr/lib"
    libdir.mkdir(parents=True)
    env = {}
    if kind == "not-elf":
        (libdir / "libnccl-net.so").write_bytes(b"#!/bin/sh\naws-ofi-nccl 1.14.2\n")
    elif kind == "directory":
        (libdir / "libnccl-net.so").mkdir()
    elif kind == "name-too-long":
        env["NCCL_NET_PLUGIN"] = "/usr/lib/" + "x" * 5000
    else:
        env["NCCL_NET_PLUGIN"] = "/usr/lib/.."
    code, checks = _static(root, env)
    plugin = checks["plugin"]
    assert code == 1 and plugin["status"] == "fail", plugin
    assert "1.14.2" not in plugin["message"] and len(plugin["message"]) < 2000
    assert ("not a loadable library" in plugin["message"]
            or "NCCL would load no net plugin" in plugin["message"])


def test_ssh_client_options_are_read_inside_the_root(tmp_path):
    """An absolute link at /etc/ssh/ssh_config is the image's file, not the host's."""
    root = _tree(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    (host / "ssh_config").write_text("StrictHostKeyChecking no\n")
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/ssh_config").symlink_to(host / "ssh_config")
    _, checks = _static(root)
    assert "no StrictHostKeyChecking in /etc/ssh/ssh_config" in checks["ssh"]["message"]
    (root / "etc/ssh/ssh_config").unlink()
    (root / "etc/ssh/ssh_config").symlink_to("/etc/ssh/real_config")
    (root / "etc/ssh/real_config").write_text("StrictHostKeyChecking no\n")
    _, checks = _static(root)
    assert "no StrictHostKeyChecking" not in checks["ssh"]["message"], checks["ssh"]["message"]
