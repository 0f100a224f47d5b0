"""Progress of long steps: on stderr, plain lines off a terminal, a bar on one, --quiet."""

import io
import subprocess
import sys

import pytest

import buildkit.progress as progress_mod
from buildkit.baseimage import _run, _stage
from buildkit.build import _lines_or_ticks
from buildkit.buildsteps import BuildSteps
from buildkit.progress import Progress
from tests import procs
from tests.procs import EFAKIT


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def _not_quiet(monkeypatch):
    monkeypatch.setattr(progress_mod, "_quiet", False)


def test_off_a_terminal_each_new_stage_is_one_plain_line():
    out = io.StringIO()
    p = Progress("build ec2", out)
    p.note("building efakit-test/x:1; full log: out/build/x/build.log")
    for step in ("[1/3] FROM base", "[1/3] FROM base", "[2/3] RUN make", "[3/3] COPY a b"):
        p.status(step)
    p.transfer("a.tar.gz", 10, 100)  # bars are for terminals
    p.done()
    lines = out.getvalue().splitlines()
    assert lines[0] == "efakit build ec2: building efakit-test/x:1; full log: out/build/x/build.log"
    assert [line.split("s ", 1)[1] for line in lines[1:]] == [
        "[1/3] FROM base", "[2/3] RUN make", "[3/3] COPY a b"]
    assert "\r" not in out.getvalue()


def test_on_a_terminal_the_status_line_and_the_bar_are_rewritten():
    out = Tty()
    p = Progress("fetch-artifacts", out)
    p.transfer("libfabric-2.6.0.tar.gz", 5_000_000, 10_000_000)
    p.status("wheels for base")
    p.note("done")
    text = out.getvalue()
    assert "\r\033[Klibfabric-2.6.0.tar.gz [###############...............]" in text
    assert "5.0/10.0 MB" in text
    assert text.endswith("\r\033[Kefakit fetch-artifacts: done\n")  # a note clears the line


def test_quiet_silences_progress(monkeypatch):
    monkeypatch.setattr(progress_mod, "_quiet", True)
    out = Tty()
    p = Progress("build ec2", out)
    p.note("x")
    p.status("y")
    p.transfer("z", 1, 2)
    p.done()
    assert out.getvalue() == ""


def test_debootstrap_lines_fold_into_stages():
    fetched = "debootstrap: retrieving and validating packages"  # alternate per package
    assert _stage("I: Retrieving libc6 2.36-9") == fetched
    assert _stage("I: Validating libc6 2.36-9") == fetched
    assert _stage("I: Retrieving InRelease ") == "debootstrap: Retrieving InRelease"
    assert _stage("I: Resolving dependencies of required packages...") == \
        "debootstrap: Resolving dependencies of required packages"
    assert _stage("I: Configuring libc-bin...") == "debootstrap: configuring packages"
    assert _stage("I: Configuring required packages...") == \
        "debootstrap: Configuring required packages"
    assert _stage("W: Cannot check Release signature") is None


def test_fetch_artifacts_says_each_file_on_stderr(tmp_path, monkeypatch):
    """Stand-in archives pinned by their own trees: no ../shared needed."""
    from buildkit.mirror import fetch_downloads
    from buildkit.spec import load_spec
    from tests.test_mirror import _home_with_pins, _stand_in_mirror

    sources = _stand_in_mirror(tmp_path)
    home = _home_with_pins(tmp_path, sources)
    spec = load_spec(home / "images" / "pytorch.yaml", profile="offline")
    monkeypatch.setenv("EFAKIT_SOURCES", str(sources))
    err = io.StringIO()
    saved, sys.stderr = sys.stderr, err
    try:
        (tmp_path / "out").mkdir()
        fetch_downloads(spec, tmp_path / "out", update_pins=False)
    finally:
        sys.stderr = saved
    lines = err.getvalue().splitlines()
    for comp in spec.components.values():
        if (comp or {}).get("url"):
            name = comp["file"]
            assert f"efakit fetch-artifacts: {name}: from the local source mirror " \
                f"{sources}" in lines
            assert any(line.startswith(f"efakit fetch-artifacts: {name}: ")
                       and line.endswith("MB, pin checked") for line in lines)


def test_efakit_quiet_flag_is_accepted_and_help_documents_it():
    proc = procs.run([*EFAKIT, "--help"], capture_output=True, text=True)
    assert "--quiet" in proc.stdout and "No progress on stderr" in proc.stdout


def test_debootstrap_per_package_lines_make_one_progress_line_per_stage():
    """debootstrap alternates Retrieving/Validating package by package: off a terminal
    (a CI log) that is one line, not one per package."""
    script = "for p in libc6 bash dash coreutils; do echo \"I: Retrieving $p 1.0\"; " \
             "echo \"I: Validating $p 1.0\"; done; echo 'I: Extracting bash...'"
    out = io.StringIO()
    _run(["bash", "-c", script], "debootstrap", Progress("base-image", out))
    stages = [line.split("s ", 1)[1] for line in out.getvalue().splitlines()]
    assert stages == ["debootstrap", "debootstrap: retrieving and validating packages",
                      "debootstrap: extracting packages"]


def test_each_buildkit_step_is_said_once_with_its_stage():
    """Header lines as BuildKit 20.10 printed them in a cold `make ci-image` (parallel
    stages: a step's header comes back whenever its output resumes)."""
    log = [
        "#4 [builder 1/7] FROM docker.io/efakit/base:bookworm",
        "#8 [stage-4  4/15] RUN --mount=type=cache,target=/var/cache/apt,sharing=locked"
        "     --mount=type=cache,target=/var/lib/apt/lists,sharing=locked     rm -f "
        "/etc/apt/apt.conf.d/docker-clean  && apt-get update  && apt-get install -y",
        "#14 [efa 1/3] RUN --mount=type=bind,source=artifacts/rdma-core-64.0.tar.gz",
        "#21 [nccl-tests 1/1] RUN --mount=type=bind,source=artifacts/nccl-tests-2.19.6.tar.gz",
        "#14 27.31 -- Build files have been written to: /tmp/src/rdma_core/build",
        "#14 [efa 1/3] RUN --mount=type=bind,source=artifacts/rdma-core-64.0.tar.gz",
        "#21 [nccl-tests 1/1] RUN --mount=type=bind,source=artifacts/nccl-tests-2.19.6.tar.gz",
        "#15 [efa 2/3] RUN --mount=type=bind,source=artifacts/libfabric-2.6.0.tar.gz",
        "#1 [internal] load build definition from Dockerfile",
    ]
    steps = BuildSteps()
    said = [text for i, line in enumerate(log) for text in steps.feed(line, float(i))]
    assert said == [
        "[builder 1/7] FROM docker.io/efakit/base:bookworm",
        "[stage-4 4/15] RUN --mount=type=cache,target=/var/cache/apt,sharing=locked "
        "--mount=type=cache,target=/var/lib/apt/lists,sharing=lock...",  # cut at 120
        "[efa 1/3] RUN --mount=type=bind,source=artifacts/rdma-core-64.0.tar.gz",
        "[nccl-tests 1/1] RUN --mount=type=bind,source=artifacts/nccl-tests-2.19.6.tar.gz",
        "[efa 2/3] RUN --mount=type=bind,source=artifacts/libfabric-2.6.0.tar.gz"]


# Lines of a warm `make ci-image` (out/build/pytorch-sagemaker-offline/build.log): BuildKit
# resolves cached steps in a scrambled order and says only CACHED after each.
WARM = [
    "#4 [stage-4  1/15] FROM docker.io/efakit/base:bookworm",
    "#4 sha256:82adc4a8091d16076c0521291f4fbfea828e4f95d52a9a1d91ea049cfb7bc1af",
    "#4 DONE 0.0s", "",
    "#13 [builder 7/7] RUN nccl_lib=\"$(/usr/bin/python3 -c 'import nvidia.nccl')\"",
    "#13 sha256:74aa075be5f3248fb2590149d06d5996a85c106056f0635da317d67e6168f7a6",
    "#13 CACHED", "",
    "#23 [stage-4 10/17] COPY --from=builder /opt/cuda-wheels/nvidia/cu13/lib/libcudart.so.13",
    "#23 sha256:3cae7d8cadb15909b17ddec3fb299d11f739ce91a7021661fec2e1e28c10f529",
    "#23 CACHED", "",
    "#6 [stage-4  2/17] COPY efakit/fetch-artifact.sh /usr/local/bin/efakit-fetch-artifact",
    "#6 sha256:383a8864ebee08fab2e3b309e61e25a3404a2c4cba1111e5faeed8ff4d605290",
    "#6 CACHED", "",
    "#10 [builder 4/7] COPY efakit/strip-tree.sh /usr/local/bin/efakit-strip",
    "#10 sha256:7b4ff1f21df647967d6905e222d0e9de95dce264e606ce20d279833a535d14f8",
    "#10 CACHED", "",
    "#28 [stage-4 15/17] RUN --mount=type=cache,target=/root/.cache/pip     efakit-with-ca pip",
    "#28 sha256:5752151de8d5860ec0d6e54df09f399692ba3d5176b3d3b71d4f3adfc32f0e5c",
    "#28 1.123 Looking in links: /artifacts/wheels",
    "#28 DONE 8.2s", "",
]


def test_cached_steps_are_said_as_cached_in_buildkits_order():
    steps = BuildSteps()
    said = [text for i, line in enumerate(WARM) for text in steps.feed(line, float(i))]
    said += steps.finish(99.0)
    assert said == [
        "[stage-4 1/15] FROM docker.io/efakit/base:bookworm",
        "[stage-4 2/17] cached COPY efakit/fetch-artifact.sh /usr/local/bin/efakit-fetch-artifact",
        "[builder 4/7] cached COPY efakit/strip-tree.sh /usr/local/bin/efakit-strip",
        "[builder 7/7] cached RUN nccl_lib=\"$(/usr/bin/python3 -c 'import nvidia.nccl')\"",
        "[stage-4 10/17] cached COPY --from=builder "
        "/opt/cuda-wheels/nvidia/cu13/lib/libcudart.so.13",
        "[stage-4 15/17] RUN --mount=type=cache,target=/root/.cache/pip efakit-with-ca pip"]


def test_all_cached_build_says_its_cached_steps_at_the_end():
    steps = BuildSteps()
    for i, line in enumerate(WARM[4:12]):
        assert steps.feed(line, float(i)) == []
    assert steps.finish(20.0) == [
        "[builder 7/7] cached RUN nccl_lib=\"$(/usr/bin/python3 -c 'import nvidia.nccl')\"",
        "[stage-4 10/17] cached COPY --from=builder "
        "/opt/cuda-wheels/nvidia/cu13/lib/libcudart.so.13"]


def test_a_long_silent_step_gets_a_heartbeat_line_every_minute():
    """The libfabric compile: its header, one line, then 211 s with nothing on the console."""
    steps = BuildSteps()
    timed = [(10.0, "#15 [efa 2/3] RUN --mount=type=bind,source=artifacts/libfabric-2.6.0.tar.gz"),
             (10.5, "#15 0.412 + ./autogen.sh")]
    said = [(t, text) for t, line in timed for text in steps.feed(line, t)]
    assert said == [(10.5, "[efa 2/3] RUN --mount=type=bind,source=artifacts/"
                           "libfabric-2.6.0.tar.gz")]
    beats = {t: steps.tick(t) for t in (30.0, 70.4, 71.0, 100.0, 131.0, 190.0)}
    still = "still in [efa 2/3] RUN --mount=type=bind,source=artifacts/libfabric-2.6.0.tar.gz"
    assert beats == {30.0: [], 70.4: [], 71.0: [f"{still} (60s in this step)"], 100.0: [],
                     131.0: [f"{still} (120s in this step)"], 190.0: []}
    steps.feed("#15 221.3 libtool: link: gcc -shared ...", 220.0)  # output: not said, no beat
    assert steps.feed("#15 DONE 221.5s", 221.0) == []
    assert steps.tick(400.0) == []  # nothing runs: no heartbeat


def test_the_build_loop_ticks_while_the_engine_prints_nothing():
    proc = procs.start(["sh", "-c", "sleep 0.5; echo '#1 DONE 0.5s'"], stdout=subprocess.PIPE,
                       text=True)
    got = list(_lines_or_ticks(proc.stdout, every=0.1))
    procs.finish(proc)
    assert got[-1] == "#1 DONE 0.5s\n" and got.count(None) >= 2
