"""Records are checked against their schemas before use; files are read by one reader.

* The boundary's schema checker (verify/boundary/records.py, the image has no
  jsonschema) agrees with jsonschema on generated records near real ones, except where
  it is stricter by design (non-finite numbers, 1.0 as an integer, NUL and lone
  surrogates, a final newline before `$`).
* A record that does not fit (a baseline, a policy, an image env record) is one line,
  exit 2, never KeyError/TypeError/RecursionError/MemoryError, and a FIFO or device
  given as one is refused without blocking.
* The instance-metadata lookup has one overall deadline: an endpoint that answers one
  byte every 0.3 s does not hold a container start.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import os
import socket
import threading
import time
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tests.test_parse_formats import good, table
from verify import cli as verify_cli
from verify import detect
from verify.boundary import records
from verify.policy import PolicyError, load_policy

BASELINE = {"schema_version": 1, "kind": "efa-verify-baseline", "name": "site-a",
            "instance": "p5.48xlarge", "recorded_from": "r.json",
            "curves": [{"collective": "all_reduce", "nodes": 2, "ranks": 16,
                        "points": [[1048576, 10.5], [2097152, 20.25]]}]}
IMAGE_ENV = {"schema_version": 1, "framework": "pytorch", "variant": "ec2", "profile": None,
             "versions": {"nccl": "2.29.7", "aws_ofi_nccl": None},
             "env": {"NCCL_DEBUG": None}, "start_defaults": {"FI_EFA_USE_DEVICE_RDMA": "1"},
             "gpu_archs": ["sm_90"], "instance_types": ["p5.48xlarge"], "absent": []}
POLICY = {"schema_version": 1, "default_required": True, "required": {"bandwidth": False},
          "waivers": [{"check": "gdr", "reason": "ticket 12", "expires": "2026-12-31"}],
          "scan_fail_on": ["CRITICAL", "HIGH"]}
VALID = {"baseline": BASELINE, "image-env": IMAGE_ENV, "policy": POLICY}

# JSON values where the checker and JSON Schema mean the same thing (see the module doc).
plain_text = st.text(max_size=12).filter(lambda s: "\x00" not in s and not s.endswith("\n"))
plain_float = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: not f.is_integer())
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**12), plain_float, plain_text,
              st.sampled_from([0, 1, -1, 2, 0.5, -0.5])),  # at the bounds the schemas set
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(plain_text, inner, max_size=3)),
    max_leaves=8)


def _paths(value, prefix=()):
    """Every key path into a JSON value (the root too)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _at(value, path):
    for part in path:
        value = value[part]
    return value


def _replace(value, path, new):
    if not path:
        return new
    value = copy.deepcopy(value)
    node = value
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = new
    return value


@st.composite
def near_records(draw):
    """A valid record with one place replaced, one key added or one key removed."""
    name = draw(st.sampled_from(sorted(VALID)))
    record = VALID[name]
    path = draw(st.sampled_from(list(_paths(record))))
    how = draw(st.sampled_from(["replace", "add", "drop", "nudge"]))
    numbers = [p for p in _paths(record) if p and isinstance(_at(record, p), (int, float))
               and not isinstance(_at(record, p), bool)]
    if how == "nudge" and numbers:  # a number just past a schema's bound
        record = _replace(record, draw(st.sampled_from(numbers)),
                          draw(st.sampled_from([0, -1, -0.5, 0.5, 1])))
    elif how == "replace":
        record = _replace(record, path, draw(json_values))
    elif how == "add":
        target = record
        for part in path:
            target = target[part]
        if isinstance(target, dict):
            record = _replace(record, path, {**target, draw(plain_text): draw(json_values)})
    elif path:
        parent = record
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict):
            record = _replace(record, path[:-1], {k: v for k, v in parent.items()
                                                  if k != path[-1]})
    return name, record


@given(near_records())
def test_the_checker_agrees_with_jsonschema(case):
    name, record = case
    validator = jsonschema.Draft202012Validator(records.schema(name))
    expected = validator.is_valid(record)
    try:
        records.check(record, name, "r")
        got = True
    except records.RecordError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("r: ")
        got = False
    assert got == expected, (name, record)


@pytest.mark.parametrize("name, record, says", [
    ("baseline", {**BASELINE, "curves": [{**BASELINE["curves"][0],
                                          "points": [[1024, math.inf]]}]}, "finite"),
    ("baseline", {**BASELINE, "curves": [{**BASELINE["curves"][0], "nodes": 2.0}]},
     "expected an integer"),
    ("image-env", {**IMAGE_ENV, "start_defaults": {"A": "x\x00y"}}, "not text"),
    ("image-env", {**IMAGE_ENV, "start_defaults": {"A\n": "1"}}, "not a shell variable name"),
    ("image-env", {**IMAGE_ENV, "versions": {"\ud800": "1"}}, "not text"),
])
def test_where_the_checker_is_stricter_than_json_schema(name, record, says):
    with pytest.raises(records.RecordError, match=says):
        records.check(record, name, "r")


def _curve(**change) -> dict:
    return {**BASELINE, "curves": [{**BASELINE["curves"][0], **change}]}


@pytest.mark.parametrize("record, fits", [
    (_curve(nodes=1), True), (_curve(nodes=0), False), (_curve(ranks=0), False),
    (_curve(points=[[0, 0]]), True), (_curve(points=[[-1, 1.0]]), False),
    (_curve(points=[[8, -0.5]]), False), (_curve(points=[[8, 1.0, 2.0]]), False),
    (_curve(points=[]), False), ({**BASELINE, "curves": []}, False),
])
def test_bounds_the_schemas_set_hold_exactly(record, fits):
    """At a bound and just past it: the checker and jsonschema both."""
    assert jsonschema.Draft202012Validator(records.schema("baseline")).is_valid(record) == fits
    try:
        records.check(record, "baseline", "r")
        assert fits
    except records.RecordError:
        assert not fits


def test_a_schema_keyword_the_checker_does_not_know_is_refused(tmp_path, monkeypatch):
    """A keyword the checker skipped would check nothing: loading such a schema fails."""
    with pytest.raises(RuntimeError, match="does not implement"):
        records._check_keywords({"type": "object", "patternProperties": {}}, "x")


def test_deep_nesting_is_one_line():
    with pytest.raises(records.RecordError, match="nested too deep"):
        records.parse_json("[" * 100000 + "]" * 100000, "r")


# --- the CLIs: one line, exit 2, nothing blocks -----------------------------------------


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rank.log").write_text(good() + good("node-b", 1, 0) + table())
    return tmp_path


def _one_line_exit_2(argv, says: str) -> None:
    result = CliRunner().invoke(verify_cli.main, argv)
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert len(result.stderr.splitlines()) == 1 and says in result.stderr, result.stderr


@pytest.mark.parametrize("text, says", [
    (json.dumps({**BASELINE, "curves": "x"}), "curves: expected a list"),
    ('{"schema_version": 1, "kind": "efa-verify-baseline", "name": "a", "curves": '
     '[{"collective": "all_reduce", "nodes": 2, "ranks": 16, "points": [[1, 1e999]]}]}',
     "finite"),
    (json.dumps({**BASELINE, "curves": [{"collective": "all_reduce"}]}), "missing"),
    ("[]", "expected a mapping"),
])
def test_a_baseline_that_does_not_fit_is_one_line(scratch, text, says):
    (scratch / "b.json").write_text(text)
    _one_line_exit_2(["parse", "rank.log", "--baseline", "b.json"], says)


@pytest.mark.parametrize("path", ["/dev/zero", "fifo", "."])
def test_a_baseline_that_is_no_file_is_refused_without_blocking(scratch, path):
    os.mkfifo(scratch / "fifo")
    started = time.monotonic()
    _one_line_exit_2(["parse", "rank.log", "--baseline", path], path if path != "." else "")
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("option", ["--baseline-tolerance", "--timeout", "--stall-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e999", "Infinity"])
def test_non_finite_numbers_are_refused(scratch, option, value):
    command = "parse" if option == "--baseline-tolerance" else "run"
    _one_line_exit_2([command, "rank.log", option, value] if command == "parse"
                     else [command, option, value], "finite")


SOON = (dt.date.today() + dt.timedelta(days=30)).isoformat()


@pytest.mark.parametrize("text, says", [
    ("schema_version: 99\n", "schema_version: expected 1"),
    (f"waivers:\n  - {{check: bandwidth, reason: a, expires: {SOON}}}\n"
     f"  - {{check: bandwidth, reason: b, expires: {SOON}}}\n", "a second waiver for bandwidth"),
    (f"required: {{bandwidth: false}}\nwaivers:\n  - {{check: bandwidth, reason: a, expires: {SOON}}}\n",
     "bandwidth is not required"),
    (f"default_required: false\nwaivers:\n  - {{check: bandwidth, reason: a, expires: {SOON}}}\n",
     "bandwidth is not required"),
])
def test_policies_that_say_nonsense_are_refused(tmp_path, text, says):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=says):
        load_policy(path)


def test_a_waiver_on_a_required_check_still_loads(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(f"required: {{bandwidth: true}}\nwaivers:\n  - {{check: bandwidth, reason: a, "
                    f"expires: {SOON}}}\n")
    assert [w.check for w in load_policy(path).waivers] == ["bandwidth"]


# --- the metadata lookup: one deadline for the whole conversation ------------------------


def _trickling_server() -> tuple[socket.socket, threading.Event]:
    """Answers every request one byte every 0.3 s, forever (until stopped)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    def trickle(conn: socket.socket) -> None:
        reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000
        with conn:
            for byte in reply:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.3)

    threading.Thread(target=serve, daemon=True).start()
    return server, stop


def test_a_trickling_metadata_endpoint_does_not_hold_the_start(monkeypatch):
    server, stop = _trickling_server()
    try:
        monkeypatch.setenv("EFAKIT_IMDS", "on")
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        started, got = time.monotonic(), []
        probe = threading.Thread(target=lambda: got.append(
            detect.from_imds(endpoint, timeout=0.5, deadline=1.0)), daemon=True)
        probe.start()
        probe.join(10)  # a lookup without its deadline would trickle on for hours
        assert not probe.is_alive(), "the metadata lookup is still reading"
        assert got == [None] and time.monotonic() - started < 3
    finally:
        stop.set()
        server.close()
