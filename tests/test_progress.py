"""Progress of long steps: on stderr, plain lines off a terminal, a bar on one, --quiet."""

import io
import sys

import pytest

import buildkit.progress as progress_mod
from buildkit.baseimage import _run, _stage
from buildkit.build import new_step
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
    started: set[str] = set()
    said = [step for step in (new_step(line, started) for line in log) if step]
    assert said == [
        "[builder 1/7] FROM docker.io/efakit/base:bookworm",
        "[stage-4 4/15] RUN --mount=type=cache,target=/var/cache/apt,sharing=locked "
        "--mount=type=cache,target=/var/lib/apt/lists,sharing=lock...",  # cut at 120
        "[efa 1/3] RUN --mount=type=bind,source=artifacts/rdma-core-64.0.tar.gz",
        "[nccl-tests 1/1] RUN --mount=type=bind,source=artifacts/nccl-tests-2.19.6.tar.gz",
        "[efa 2/3] RUN --mount=type=bind,source=artifacts/libfabric-2.6.0.tar.gz"]
