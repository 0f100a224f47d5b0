"""A mangled failing log never earns PASS (issue #24, attack-1 SA-9).

A log that fails (here: all_reduce at 107 GB/s on 2 x p5, under the published floor)
keeps failing, or becomes inconclusive, whatever happens to its newlines, however often
it is repeated, and however its .gz is cut: a line the reader cannot read whole makes
the checks it feeds unknown, citing the line, and a FAIL still wins.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CORPUS, FIXTURES
from verify.logparse.result import Options, build, parse_sources
from verify.logparse.sources import Source
from verify.policy import load_policy
from verify.profiles import resolve

# 2 x p5, all_reduce at 107 GB/s: under the published floor, so the verdict is FAIL.
FAILING = (FIXTURES / "parse" / "below-floor-p5.log").read_bytes()
LINES = FAILING.split(b"\n")[:-1]
SEPARATORS = st.sampled_from([b"\n", b"\n", b" ", b""])


def _verdict(path: Path) -> str:
    model, inputs = parse_sources([Source(str(path), path)])
    return build(model, inputs, Options(resolve("p5"), "--instance-type", 2),
                 load_policy(None))["verdict"]


def test_the_log_itself_fails(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(FAILING)
    assert _verdict(path) == "fail"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seps=st.lists(SEPARATORS, min_size=len(LINES), max_size=len(LINES)),
       times=st.sampled_from([1, 2, 50, 3000]), gz=st.booleans(),
       cut=st.floats(0.05, 1.0))
def test_a_mangled_failing_log_never_passes(tmp_path, seps, times, gz, cut):
    data = (b"".join(line + sep for line, sep in zip(LINES, seps, strict=True)) + b"\n") * times
    path = tmp_path / ("m.log.gz" if gz else "m.log")
    if gz:
        packed = gzip.compress(data, 1)
        path.write_bytes(packed[:max(20, int(len(packed) * cut))])
    else:
        path.write_bytes(data)
    assert _verdict(path) != "pass"


def test_attack_sa9_newlines_lost_and_repeated_3000_times_is_not_pass(tmp_path):
    """The attacker's case: newlines replaced by spaces, 3000 copies on one 4.8 MB line
    read PASS (the nccl-tests rows were lost, the bandwidth checks became skip)."""
    path = tmp_path / "g.log"
    path.write_bytes(FAILING.replace(b"\n", b" ") * 3000)
    proc = subprocess.run([sys.executable, "-m", "verify", "parse", str(path),
                           "--instance-type", "p5", "--expect-nodes", "2"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode in (1, 3), proc.stdout + proc.stderr
    assert "VERDICT: PASS" not in proc.stdout
    assert "UNKNOWN  bandwidth: " in proc.stdout
    assert "line 1, at byte 0" in proc.stdout


def test_attack_sa11_one_file_named_three_ways_is_read_once(tmp_path):
    """attack-1 SA-11: `x ./x link-to-x` was parsed three times (every count tripled)."""
    from verify.logparse.sources import expand

    path = tmp_path / "x.log"
    path.write_bytes(FAILING)
    (tmp_path / "link.log").symlink_to("x.log")
    given = [str(path), f"{tmp_path}/./x.log", str(tmp_path / "link.log"), str(tmp_path)]
    assert [s.name for s in expand(given)] == [str(path)]


def test_attack_sa7_an_instance_type_with_a_newline_is_refused():
    """attack-1 SA-7: env and preflight took `p5\\n` as p5; launch refused it."""
    import pytest

    from verify.profiles import UnknownInstance

    for text in ("p5\n", "p5\r", "\x1bp5"):
        with pytest.raises(UnknownInstance, match="control character"):
            resolve(text)
    assert resolve(" p5 ").name == "p5.48xlarge"


PASSING = next(CORPUS.glob("002-*.log")).read_bytes()  # a healthy 2 x p4d job: PASS


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), times=st.sampled_from([1, 2, 40]))
def test_a_mangled_passing_log_is_never_accused(tmp_path, data, times):
    """The other side: what the reader could not read makes checks unknown, and its
    warnings are no error lines, so a healthy job's mangled log is never a FAIL."""
    lines = PASSING.split(b"\n")[:-1]
    glue = data.draw(st.sets(st.integers(0, len(lines) - 1), max_size=len(lines)))
    mangled = b"".join(line + (b" " if i in glue else b"\n") for i, line in enumerate(lines))
    path = tmp_path / "p.log"
    path.write_bytes((mangled + b"\n") * times)
    model, inputs = parse_sources([Source(str(path), path)])
    result = build(model, inputs, Options(resolve("p4d"), "--instance-type", 2),
                   load_policy(None))
    assert result["verdict"] in ("pass", "inconclusive"), result["verdict_reason"]
