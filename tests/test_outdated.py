"""`efakit outdated` against a stand-in for its upstreams on 127.0.0.1.

The stand-in (tests/upstream_server.py) serves recorded answers (tests/fixtures/upstream,
SOURCES.md says where each came from); nothing is asked beyond the loopback address.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import QUIET_ENV, ROOT
from tests.upstream_server import ENV, StandIn, serving

SPEC = ROOT / "images" / "pytorch.yaml"
SCHEMA = json.loads((ROOT / "buildkit" / "schema" / "outdated.schema.json").read_text())


def outdated(stand_in: StandIn | None, *args: str, extra_env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`efakit -q outdated ARGS` with every upstream pointed at the stand-in (or, without
    one, at a closed port: a test that reaches the network fails instead)."""
    env = {key: value for key, value in os.environ.items() if key not in ENV}
    env.update(QUIET_ENV)
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    env.update(stand_in.env() if stand_in else {name: "http://127.0.0.1:9/" for name in ENV})
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "buildkit", "-q", "outdated", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def spec_copy(tmp_path: Path) -> Path:
    """The spec as it is today, in a folder of its own (its name says its framework)."""
    target = tmp_path / "spec" / "pytorch.yaml"
    target.parent.mkdir()
    shutil.copyfile(SPEC, target)
    return target


def by_where(doc: dict) -> dict[str, dict]:
    return {pin["where"]: pin for pin in doc["pins"]}


def test_the_spec_today_is_behind_table_and_json(spec_copy):
    with serving() as stand_in:
        table = outdated(stand_in, str(spec_copy))
        record = outdated(stand_in, str(spec_copy), "--json")
    assert table.returncode == 1, table.stderr
    assert table.stderr == ""
    assert f"{spec_copy}: behind:" in table.stdout
    header = table.stdout.splitlines()[0].split()
    assert header == ["PIN", "PINNED", "NEWEST", "STATUS", "ASKED"]
    assert record.returncode == 1
    doc = json.loads(record.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["verdict"] == "behind" and doc["exit_code"] == 1
    pins = by_where(doc)
    raw = yaml.safe_load(spec_copy.read_text())
    # Every pin of the spec is a row, in the table and the record alike.
    assert len(table.stdout.split("\n\n")[0].splitlines()) == len(doc["pins"]) + 1
    assert pins["efa_installer"]["pinned"] == raw["components"]["efa_installer"]["version"]
    # Recorded: AWS's notes list 1.51.0; a candidate tag never counts (libfabric v2.6.0rc2).
    if raw["components"]["efa_installer"]["version"] == "1.50.0":
        assert pins["efa_installer"]["status"] == "behind"
        assert pins["efa_installer"]["behind"] == {"releases": 1, "level": "minor"}
    assert pins["offline: libfabric"]["newest"] == "2.7.0"
    assert pins["gdrcopy"]["status"] == "current"
    assert pins["gdrcopy"]["commit"] == "93c606bbcaa10457cbbab93163aa446d902b983d"
    # NCCL with policy keep follows what its profile's torch requires, not the newest wheel.
    assert pins["offline: nccl"]["newest"] == "2.30.7"
    assert "2.32.6" in pins["offline: nccl"]["note"]
    # Untracked pins say why; wheels carry their files' sha256 from the index.
    assert "NGC token" in pins["base ngc image nvcr.io/nvidia/pytorch"]["note"]
    assert pins["aws_ofi_nccl"]["status"] == "untracked"
    nvcc = pins["offline: base debian-local builder wheel nvidia-cuda-nvcc"]
    assert nvcc["newest"] == "13.5.37"
    assert nvcc["files"][0]["sha256"].startswith("f5c4f7ead5d9")
    assert doc["endpoints"]["pypi"].startswith("http://127.0.0.1:")


def test_update_pins_writes_a_current_copy_and_never_the_spec(spec_copy, tmp_path):
    before = spec_copy.read_bytes()
    out = tmp_path / "out" / "pytorch.yaml"
    out.parent.mkdir()
    with serving() as stand_in:
        moved = outdated(stand_in, str(spec_copy), "--update-pins", str(out))
        again = outdated(stand_in, str(out), "--json")
    assert moved.returncode == 1, moved.stderr
    assert spec_copy.read_bytes() == before
    assert again.returncode == 0, again.stdout + again.stderr
    doc = json.loads(again.stdout)
    assert doc["verdict"] == "current"
    assert {pin["status"] for pin in doc["pins"]} <= {"current", "untracked"}
    text = out.read_text()
    # Every comment of the spec is still there; the new ones say where each value came from.
    for line in before.decode().splitlines():
        if line.strip().startswith("#"):
            assert line in text
    copy = yaml.safe_load(text)
    libfabric = copy["profiles"]["offline"]["components"]["libfabric"]
    assert libfabric["version"] == "2.7.0"
    assert libfabric["url"].endswith("/v2.7.0.tar.gz")
    assert libfabric["sha256"] is None and "tree" not in libfabric
    assert "fetch-artifacts" in libfabric["reason"]
    assert "v2.7.0" in libfabric["provenance"]
    assert copy["profiles"]["offline"]["components"]["nccl"]["version"] == "2.30.7"
    local = copy["profiles"]["offline"]["base"]["choices"]["debian-local"]
    assert "nvidia-cuda-runtime==13.5.37" in local["builder_wheels"]
    assert local["cuda"] == "13.5"  # moves with the CUDA runtime wheel (upstream.yaml cuda_from)
    assert "sha256 f5c4f7ead5d9" in text


@pytest.mark.parametrize("same", ["itself", "link", "dotted"])
def test_update_pins_refuses_the_spec_as_its_output(spec_copy, same):
    before = spec_copy.read_bytes()
    target = {"itself": spec_copy, "dotted": spec_copy.parent / "." / spec_copy.name,
              "link": spec_copy.parent / "link.yaml"}[same]
    if same == "link":
        target.symlink_to(spec_copy)
    proc = outdated(None, str(spec_copy), "--update-pins", str(target))
    assert proc.returncode == 2
    assert "may not replace an input" in one_line_error(proc)
    assert spec_copy.read_bytes() == before


def test_an_upstream_that_does_not_answer_is_inconclusive_in_bounded_time(spec_copy):
    started = time.monotonic()
    with serving(StandIn(stall=30)) as stand_in:
        proc = outdated(stand_in, str(spec_copy), "--timeout", "0.5", "--deadline", "2")
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stdout + proc.stderr
    line = one_line_error(proc)
    assert "could not be asked (verdict: inconclusive)" in line
    assert "no answer within 0.5 s" in line
    assert elapsed < 20, elapsed
    assert "overall deadline of 2 s" in proc.stdout


MALFORMED = [b"not json", b"", b"\xff\xfe\x00", b"{}", b"[]", b"null", b'{"releases": 5}',
             b'{"info": {}, "releases": {"9.9": [{"filename": "x", "digests": {"sha256": "zz"}}]}}',
             b'{"results": [{"name": 7}]}', b'[{"tag_name": null}]', b'{"info": [], "results": {}}',
             b'{"' + b"a" * 5000]


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_answers_are_inconclusive_in_one_line(spec_copy, body):
    stand_in = StandIn()
    stand_in.answer = lambda path: (200, body)  # every upstream answers the same garbage
    with serving(stand_in):
        proc = outdated(stand_in, str(spec_copy), "--json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    one_line_error(proc)
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["verdict"] == "inconclusive"
    assert {pin["status"] for pin in doc["pins"]} <= {"error", "untracked"}


def test_one_broken_answer_is_that_pins_error_and_the_rest_still_counts(spec_copy):
    stand_in = StandIn(override={"/pypi/mpi4py/json": (500, b"oops")})
    with serving(stand_in):
        proc = outdated(stand_in, str(spec_copy), "--json")
    assert proc.returncode == 1  # behind is a fact whatever else could not be asked
    pins = by_where(json.loads(proc.stdout))
    assert pins["sagemaker package mpi4py"]["status"] == "error"
    assert "HTTP 500" in pins["sagemaker package mpi4py"]["note"]
    assert "mpi4py" in one_line_error(proc)


@pytest.mark.parametrize(("args", "env", "says"), [
    (["no-such-framework"], {}, "no image spec"),
    (["/nonexistent/pytorch.yaml"], {}, "pytorch.yaml"),
    (["--timeout", "0"], {}, "--timeout"),
    (["--deadline", "nan"], {}, "--deadline"),
    ([], {"EFAKIT_PYPI_URL": "http://pypi.example.org/pypi"}, "EFAKIT_PYPI_URL"),
    ([], {"EFAKIT_GITHUB_API": "ftp://127.0.0.1/"}, "EFAKIT_GITHUB_API"),
    ([], {"EFAKIT_DOCKERHUB_API": "https://hub.example/v2?x=1"}, "EFAKIT_DOCKERHUB_API"),
    (["--update-pins", "/nonexistent/dir/out.yaml"], {}, "does not exist"),
])
def test_bad_input_is_one_line_exit_2(args, env, says):
    proc = outdated(None, *args, extra_env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert says in one_line_error(proc)
    assert proc.stdout == ""


def test_every_pinned_component_and_image_of_the_spec_has_an_upstream_row():
    """A component or base added to the spec without a row would only ever read
    'untracked': the table must name where it is asked, or why it is not."""
    from buildkit.upstream.pins import spec_pins
    from buildkit.upstream.table import load_upstreams

    table = load_upstreams()
    pins = spec_pins(yaml.safe_load(SPEC.read_text()))
    components = {p.name for p in pins if p.kind == "component" and not p.bundled}
    images = {p.name for p in pins if p.kind == "image"}
    assert components and images
    assert components - set(table.components) == set()
    assert images - set(table.images) == set()
    for pin in pins:
        if pin.kind == "image" and table.images[pin.name]["upstream"] == "dockerhub":
            assert any(t.pattern.fullmatch(pin.pinned) for t in table.image_tags[pin.name]), pin


def test_every_wheel_the_spec_pins_has_a_recorded_answer():
    """A new wheel pin needs its recorded PyPI answer for the stand-in; without one the
    tests above would read inconclusive for a reason that is not the code's."""
    from buildkit.upstream.pins import spec_pins
    from tests.upstream_server import FIXTURES

    names = {p.name for p in spec_pins(yaml.safe_load(SPEC.read_text()))
             if p.kind in ("wheel", "torch")}
    missing = sorted(n for n in names if not (FIXTURES / "pypi" / n / "json.json").is_file())
    assert missing == [], ("record tests/fixtures/upstream/pypi/<name>/json.json for these "
                           f"(tests/fixtures/upstream/SOURCES.md says how): {missing}")


SYNTHETIC_DIGEST = "sha256:" + "ab" * 32  # made up for this test: no registry is asked


def test_a_newer_base_tag_moves_the_image_with_its_digest_and_the_torch_and_cuda_it_carries(
        spec_copy, tmp_path):
    """Synthetic answers (not recorded: a made-up tag 2.99.0 and digest) drive the image
    path of --update-pins; a re-pushed tag of the same version is a note, not behind."""
    pytorch = {"results": [
        {"name": "2.99.0-cuda13.9-cudnn9-runtime", "digest": SYNTHETIC_DIGEST},
        {"name": "2.99.0-cuda13.9-cudnn9-devel", "digest": SYNTHETIC_DIGEST},
        {"name": "2.13.0-cuda13.0-cudnn9-runtime"}]}
    cuda = {"results": [{"name": "13.0.2-devel-ubuntu24.04", "digest": SYNTHETIC_DIGEST},
                        {"name": "13.0.2-runtime-ubuntu24.04"}]}
    stand_in = StandIn(override={
        "/dockerhub/repositories/pytorch/pytorch/tags": (200, json.dumps(pytorch).encode()),
        "/dockerhub/repositories/nvidia/cuda/tags": (200, json.dumps(cuda).encode())})
    out = tmp_path / "pytorch.yaml"
    with serving(stand_in):
        record = outdated(stand_in, str(spec_copy), "--json", "--update-pins", str(out))
    pins = by_where(json.loads(record.stdout))
    image = pins["base pytorch-runtime image pytorch/pytorch"]
    assert image["status"] == "behind" and image["newest"] == "2.99.0"
    assert image["digest"] == SYNTHETIC_DIGEST
    assert "now names " + SYNTHETIC_DIGEST in pins[
        "base pytorch-runtime builder_image nvidia/cuda"]["note"]
    choice = yaml.safe_load(out.read_text())["base"]["choices"]["pytorch-runtime"]
    assert choice["image"] == f"pytorch/pytorch:2.99.0-cuda13.9-cudnn9-runtime@{SYNTHETIC_DIGEST}"
    assert (choice["torch"], choice["cuda"]) == ("2.99.0", "13.9")
    assert "the why below still speaks of the old tag" in out.read_text()


# --- hostile answers: bounded by the one reader (attack-1 TB-2, TB-3, SA-16, SA-17) -----

MPI4PY = ROOT / "tests" / "fixtures" / "upstream" / "pypi" / "mpi4py" / "json.json"


def _with_release(version: str) -> bytes:
    """mpi4py's recorded answer with one more release, which has a (made-up) file."""
    doc = json.loads(MPI4PY.read_text())
    doc["releases"][version] = [{"filename": f"mpi4py-{version}.tar.gz", "yanked": False,
                                 "digests": {"sha256": "a" * 64}}]
    return json.dumps(doc).encode()


HOSTILE = {
    "deep": b"[" * 200_000 + b"]" * 200_000,
    "deep-object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "just-too-deep": b"[" * 40 + b"]" * 40,
    "5000-digit number": b'{"info": {}, "releases": ' + b"9" * 5000 + b"}",
    "1e400": b'{"info": {}, "releases": 1e400}',
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_answer_is_that_pins_error_in_one_line(spec_copy, body):
    """Every upstream gives the same hostile answer: the verdict is inconclusive (exit
    3, one line), never a traceback (RecursionError, int() of 5000 digits) and never a
    release made of other scripts' digits."""
    stand_in = StandIn()
    stand_in.answer = lambda path: (200, body)
    started = time.monotonic()
    with serving(stand_in):
        proc = outdated(stand_in, str(spec_copy), "--json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    one_line_error(proc)
    assert time.monotonic() - started < 60
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert {pin["status"] for pin in doc["pins"]} <= {"error", "untracked"}


@pytest.mark.parametrize("version", ["٩٩.٠", "9" * 5000 + ".0", "1" * 19])
def test_a_release_that_is_no_release_is_not_the_newest(spec_copy, version):
    """attack-1 SA-16: PyPI listing '٩٩.٠' made it mpi4py's newest release ("behind 1
    release (major)", and --update-pins wrote it); now it is not a release at all."""
    with serving(StandIn()) as plain:
        before_text = outdated(plain, str(spec_copy), "--json").stdout
    with serving(StandIn(override={"/pypi/mpi4py/json": (200, _with_release(version))})) \
            as stand_in:
        proc = outdated(stand_in, str(spec_copy), "--json")
    assert "Traceback" not in proc.stderr
    after, before = (by_where(json.loads(text))["sagemaker package mpi4py"]
                     for text in (proc.stdout, before_text))
    assert {**after, "asked": None} == {**before, "asked": None}  # "asked": another port


def test_a_redirect_to_another_origin_is_not_followed(spec_copy):
    """attack-1 SA-17: a 302 from the loopback stand-in to 127.0.0.2 was followed (36
    requests went there); a redirect may not leave the origin asked."""
    with serving(StandIn()) as elsewhere, serving(StandIn()) as stand_in:
        target = f"http://127.0.0.2:{elsewhere.port}/pypi/mpi4py/json"
        stand_in.redirect = {"/pypi/mpi4py/json": target}
        proc = outdated(stand_in, str(spec_copy), "--json")
    pins = by_where(json.loads(proc.stdout))
    assert pins["sagemaker package mpi4py"]["status"] == "error"
    assert "redirect to another origin (http://127.0.0.2:" in \
        pins["sagemaker package mpi4py"]["note"]
    assert elsewhere.asked == []


def test_a_redirect_within_the_origin_is_followed_a_few_times_only(spec_copy):
    """PyPI redirects a name to its normalised form (one hop, followed); a chain longer
    than MAX_REDIRECTS is that pin's error."""
    hops = {"/pypi/mpi4py/json": "/pypi/MPI4PY/json", "/pypi/MPI4PY/json": "/pypi/a/json",
            "/pypi/a/json": "/pypi/b/json", "/pypi/b/json": "/pypi/c/json",
            "/pypi/c/json": "/pypi/d/json"}
    with serving(StandIn(override={"/pypi/Mpi4py/json": (200, MPI4PY.read_bytes())},
                         redirect=hops)) as stand_in:
        proc = outdated(stand_in, str(spec_copy), "--json")
    pins = by_where(json.loads(proc.stdout))
    assert "more than 3 redirects" in pins["sagemaker package mpi4py"]["note"]
    assert stand_in.asked.count("/pypi/d/json") == 0
    with serving(StandIn(redirect={"/pypi/mpi4py/json": "/pypi/mpi4py/json.json"},
                         override={"/pypi/mpi4py/json.json": (200, MPI4PY.read_bytes())})) \
            as stand_in:
        proc = outdated(stand_in, str(spec_copy), "--json")
    assert by_where(json.loads(proc.stdout))["sagemaker package mpi4py"]["status"] != "error"


_VERSIONS = st.one_of(st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}", fullmatch=True),
                      st.text("0123456789.٠٩०९０９", min_size=1, max_size=8),
                      st.integers(19, 6000).map(lambda n: "7" * n))
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


def _nested(depth: int, opener: bytes, closer: bytes) -> bytes:
    return opener * depth + b"1" + closer * depth


_ANSWERS = st.one_of(
    st.integers(1, 300_000).map(lambda d: _nested(d, b"[", b"]")),
    st.integers(1, 100_000).map(lambda d: _nested(d, b'{"info":', b"}")),
    st.integers(1, 6000).map(lambda n: b'{"info": {}, "releases": {"1": [' + b"9" * n + b"]}}"),
    _VERSIONS.map(_with_release),
    st.lists(_VERSIONS, max_size=4).map(lambda vs: json.dumps(
        [{"tag_name": f"v{v}", "name": f"v{v}"} for v in vs]).encode()),
    _JSON.map(lambda doc: json.dumps(doc).encode()),
    st.binary(max_size=64),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large,
                                                                 HealthCheck.large_base_example])
@given(answer=_ANSWERS)
def test_any_answer_is_exit_0_1_or_3_in_one_line_within_the_deadline(tmp_path_factory, answer):
    """The promise over generated hostile answers (every upstream gives the same): a
    verdict, at most one line on stderr, no traceback, within --deadline."""
    spec = tmp_path_factory.mktemp("spec") / "pytorch.yaml"
    shutil.copyfile(SPEC, spec)
    stand_in = StandIn()
    stand_in.answer = lambda path: (200, answer)
    started = time.monotonic()
    with serving(stand_in):
        proc = outdated(stand_in, str(spec), "--json", "--deadline", "30")
    assert time.monotonic() - started < 45
    assert proc.returncode in (0, 1, 3), proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) <= 1
    jsonschema.validate(json.loads(proc.stdout), SCHEMA)


def _drip_server(headers_too: bool):
    """A 127.0.0.1 server that answers every request one byte every 0.4 s (the status
    line and headers too when `headers_too`), each byte well inside --timeout."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        with conn:
            conn.recv(65536)
            if not headers_too:
                conn.sendall(head)
                head = b""
            for byte in head + b'{"info": {"version": "1.0"}, "x": "' + b"a" * 100000:
                if stop.wait(0.4):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener, stop


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_dripping_upstream_is_cut_off_at_the_overall_deadline(spec_copy, headers_too):
    """attack-2 H-1: one byte every 0.4 s (inside --timeout 2) never ended a 64 KiB read."""
    listener, stop = _drip_server(headers_too)
    port = listener.getsockname()[1]
    try:
        started = time.monotonic()
        proc = outdated(None, str(spec_copy), "--deadline", "3", "--timeout", "2",
                        extra_env={name: f"http://127.0.0.1:{port}/{path}"
                                   for name, path in ENV.items()}, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        listener.close()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    one_line_error(proc)
    assert "deadline of 3 s" in proc.stdout + proc.stderr
    assert elapsed < 3 + 1 + 1.5, elapsed  # deadline + 1 s, plus the interpreter's start
