"""Policies (required checks, expiring waivers) and the host-side report/plot."""

import datetime as dt
import json

import pytest

from tests import procs
from tests.parsehelp import check, parse_text
from tests.procs import EFAKIT, VERIFY
from tests.test_parse_formats import good, slow_table, table
from verify.policy import PolicyError, load_policy

# Below 80% of p5's lowest published 2-node figure, above the derived floor.
LOW = slow_table(200)


# An expiry inside the 731 days a waiver may run, whatever today is.
SOON = (dt.date.today() + dt.timedelta(days=30)).isoformat()


def _policy(tmp_path, text):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def test_default_policy_requires_everything():
    policy = load_policy(None)
    assert policy.is_required("anything") and policy.waivers == []


def test_waiver_shows_waived_never_pass_and_changes_the_verdict(tmp_path):
    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    policy = _policy(tmp_path, f"""
waivers:
  - check: bandwidth
    reason: "p5 fabric upgrade pending (ticket NET-12)"
    expires: {future}
""")
    result = parse_text(tmp_path, good() + good("node-b", 1, 0) + LOW, instance="p5",
                        policy=policy)
    bw = check(result, "bandwidth")
    assert bw["status"] == "waived" and bw["waiver"]["status_without_waiver"] == "fail"
    assert result["verdict"] == "pass"


def test_expired_waiver_is_ignored_and_says_so(tmp_path):
    policy = _policy(tmp_path, """
waivers:
  - check: bandwidth
    reason: "temporary"
    expires: 2020-01-01
""")
    result = parse_text(tmp_path, good() + good("node-b", 1, 0) + LOW, instance="p5",
                        policy=policy)
    bw = check(result, "bandwidth")
    assert bw["status"] == "fail" and "waiver expired 2020-01-01" in bw["message"]
    assert result["verdict"] == "fail"


def test_not_required_check_does_not_decide(tmp_path):
    policy = _policy(tmp_path, "required: {bandwidth: false}\n")
    result = parse_text(tmp_path, good() + good("node-b", 1, 0) + LOW, instance="p5",
                        policy=policy)
    assert check(result, "bandwidth")["required"] is False and result["verdict"] == "pass"


@pytest.mark.parametrize("text,message", [
    ("waivers:\n  - check: x\n    reason: r\n", r"waivers.0.expires: missing"),
    (f"waivers:\n  - {{check: x, reason: '', expires: {SOON}}}\n", "reason must not be empty"),
    ("waivers:\n  - {check: x, reason: r, expires: soon}\n", "not YYYY-MM-DD"),
    ("required: {bandwidth: maybe}\n", "required.bandwidth: expected true/false"),
    ("colour: red\n", "unknown key"),
    ("- a list\n", "expected a mapping"),
    # check names come from verify/data/checks.yaml: a typo is refused, not ignored
    ("required: {bandwith: false}\n", r"required names unknown check\(s\) bandwith"),
    (f"waivers:\n  - {{check: efa_use, reason: r, expires: {SOON}}}\n",
     r"waivers names unknown check\(s\) efa_use"),
])
def test_bad_policies(tmp_path, text, message):
    with pytest.raises(PolicyError, match=message):
        _policy(tmp_path, text)


@pytest.mark.parametrize("text,message", [
    ("colour: red\n", "unknown key"),
    # a misspelled check name used to waive nothing, silently
    (f"waivers:\n  - {{check: bandwith, reason: r, expires: {SOON}}}\n",
     "waivers names unknown check(s) bandwith"),
])
def test_bad_policy_on_the_command_line_is_one_line_exit_2(tmp_path, text, message):
    log = tmp_path / "x.log"
    log.write_text(good())
    bad = tmp_path / "p.yaml"
    bad.write_text(text)
    proc = procs.run([*VERIFY, "parse", str(log), "--policy", str(bad)],
                     capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_report_and_plot_from_a_result(tmp_path):
    log, result_file, png = tmp_path / "x.log", tmp_path / "r.json", tmp_path / "bw.png"
    log.write_text(good() + good("node-b", 1, 0) + table())
    procs.run([*VERIFY, "parse", str(log), "--instance-type", "p5", "-o",
               str(result_file)], capture_output=True, check=False)
    proc = procs.run([*EFAKIT, "report", str(result_file), "--plot", str(png)],
                     capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "VERDICT: PASS" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_report_rejects_what_is_not_a_result(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    proc = procs.run([*EFAKIT, "report", str(other)], capture_output=True, text=True)
    assert proc.returncode == 2 and "not a valid efa-verify result" in proc.stderr


def test_a_failed_check_outranks_an_inconclusive_one(tmp_path):
    """Exit 1, not 3: a job that failed a check is a failure even when another is unknown."""
    from verify.checks import Check, verdict

    unknown, failed = Check("bandwidth", "unknown", True, "?"), Check("gdr_used", "fail", True, "")
    assert verdict([unknown, failed]) == ("fail", failed)
    no_gdr = good("node-b", 1, 0).replace("/GDRDMA", "")
    # No instance type: no bandwidth expectation, so bandwidth is unknown.
    result = parse_text(tmp_path, good() + no_gdr + table(), instance=None)
    assert check(result, "bandwidth")["status"] == "unknown"
    assert result["verdict"] == "fail" and result["verdict_reason"].startswith("gdr_used")


def test_default_required_false_leaves_only_the_listed_checks_deciding(tmp_path):
    policy = _policy(tmp_path, "default_required: false\nrequired: {gdr_used: true}\n")
    result = parse_text(tmp_path, good() + good("node-b", 1, 0) + table(), instance="p4d",
                        policy=policy)
    assert check(result, "bandwidth")["required"] is False and result["verdict"] == "pass"
    assert check(result, "gdr_used")["required"] is True


def test_a_check_its_producer_made_optional_stays_optional():
    from verify.checks import Check, apply, verdict

    optional = Check("gpus", "fail", False, "no GPU on this test machine")
    apply(load_policy(None), [optional])
    assert optional.required is False and verdict([optional]) == ("pass", None)


def test_a_waiver_on_a_passing_check_waives_nothing(tmp_path):
    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    policy = _policy(tmp_path, f"waivers:\n  - {{check: transport, reason: r, expires: {future}}}\n")
    result = parse_text(tmp_path, good() + good("node-b", 1, 0) + table(), instance="p5",
                        policy=policy)
    transport = check(result, "transport")
    assert transport["status"] == "pass" and "waiver" not in transport
