"""Bad inputs to efa-verify and efakit report: policies, logs, output paths, hostfiles,
Slurm node lists, image env records and results.  Each: the exit code, one line on
stderr and never a traceback, and the scratch folder left as it was."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from buildkit import cli as host_cli
from tests.badinput import Case, check
from tests.conftest import CORPUS
from verify import cli as verify_cli

GOOD_LOG = CORPUS / "001-efa-gdr-p4d-nccl283-eks-nccltests.log"


@pytest.fixture
def scratch(tmp_path):
    shutil.copy(GOOD_LOG, tmp_path / "good.log")
    (tmp_path / "afile").write_text("keep\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "binary").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "emptydir").mkdir()
    return tmp_path


def _waiver(expires: str, check_name: str = "gdr", reason: str = "r") -> str:
    return f"waivers:\n  - check: {check_name}\n    reason: {reason}\n    expires: {expires}\n"


POLICIES = {
    "baddate": _waiver("2026-13-45"),
    "baddate-feb30": _waiver("2027-02-30"),
    "baddate-day0": _waiver("2027-01-00"),
    "datetime": _waiver("2030-01-01T10:00:00"),
    "datetime-space": _waiver("2027-01-01 10:00:00"),
    "datetime-tz": _waiver("2027-01-01T10:00:00Z"),
    "farfuture": _waiver("9999-12-31"),
    "farfuture-2100": _waiver("2100-01-01"),
    "quoted-farfuture": _waiver("'9999-12-31'"),
    "quoted-baddate": _waiver("'2026-13-45'"),
    "intdate": _waiver("20270101"),
    "floatdate": _waiver("2027.5"),
    "worddate": _waiver("soon"),
    "nulldate": _waiver("null"),
    "listdate": _waiver("[2027-01-01]"),
    "emptyreason": _waiver("2027-01-01", reason="''"),
    "spacereason": _waiver("2027-01-01", reason="'   '"),
    "listreason": _waiver("2027-01-01", reason="[a]"),
    "intcheck": _waiver("2027-01-01", check_name="5"),
    "emptycheck": _waiver("2027-01-01", check_name="''"),
    "listcheck": _waiver("2027-01-01", check_name="[gdr]"),
    "waiver-extra-key": _waiver("2027-01-01") + "    ticket: X-1\n",
    "waiver-missing-expires": "waivers:\n  - check: gdr\n    reason: r\n",
    "waiver-scalar": "waivers:\n  - gdr\n",
    "waivers-dict": "waivers: {check: gdr}\n",
    "waivers-str": "waivers: gdr\n",
    "unknownkey": "colour: red\n",
    "reqstr": "required: gdr\n",
    "reqlist": "required: [gdr]\n",
    "reqvalue-str": "required: {gdr: 'no'}\n",
    "reqvalue-int": "required: {gdr: 0}\n",
    "reqkey-int": "required: {5: false}\n",
    "default-str": "default_required: 'false'\n",
    "default-int": "default_required: 0\n",
    "scan-str": "scan_fail_on: CRITICAL\n",
    "scan-bad": "scan_fail_on: [SEVERE]\n",
    "scan-int": "scan_fail_on: [5]\n",
    "scan-nested": "scan_fail_on: [[CRITICAL]]\n",
    "list": "- a\n- b\n",
    "scalar": "strict\n",
    "empty": "",
    "badyaml": "required: {gdr: true\n",
    "dupkey": "required: {gdr: true}\nrequired: {gdr: false}\n",
    "dupkey-waiver": _waiver("2027-01-01") + "    check: efa\n",
    "nan": "required: {gdr: .nan}\n",
    "deep": "required: " + "[" * 10000 + "]" * 10000 + "\n",
    "python-tag": "required: !!python/object/apply:os.system ['true']\n",
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_bad_policies(scratch, name):
    (scratch / "policy.yaml").write_text(POLICIES[name])
    check(verify_cli.main, Case(f"pol-{name}", ("parse", "good.log", "--instance-type", "p5",
                                                "--policy", "policy.yaml"), 2), scratch)


@pytest.mark.parametrize("path", ["fifo", "binary", "emptydir", "loop1", "nope.yaml",
                                  "/proc/self/mem", "/dev/zero", "afile/sub"])
def test_policy_paths_that_cannot_be_a_policy(scratch, path):
    check(verify_cli.main, Case(f"pol-path-{path}", ("parse", "good.log", "--policy", path), 2),
          scratch)


@pytest.mark.parametrize("args", [
    ("nope.log",), ("emptydir",), ("loop1",), ("fifo",), ("/dev/zero",), ("/proc/self/mem",),
    ("good.log", "nope.log"), ("afile/sub",),
])
def test_log_paths_that_cannot_be_read(scratch, args):
    check(verify_cli.main, Case(f"parse-{'-'.join(args)}", ("parse", *args), 2), scratch)


@pytest.mark.parametrize("option,target", [
    ("-o", "/proc/x"), ("-o", "/nonexistent/dir/x.json"), ("-o", "emptydir"),
    ("-o", "afile/x.json"), ("-o", "/sys/kernel/x"), ("--junit", "/proc/x"),
    ("--junit", "emptydir"), ("--junit", "afile/x.xml"), ("--markdown", "/sys/kernel/x"),
    ("--markdown", "/proc/x.md"), ("--markdown", "afile/x.md"), ("--markdown", "emptydir"),
    ("-o", "loop1"),
])
def test_unwritable_report_paths(scratch, option, target):
    check(verify_cli.main, Case(f"out-{option}-{target}", ("parse", "good.log", option, target),
                                2, "cannot write"), scratch)


@pytest.mark.parametrize("value", ["", "bogus", " ", "ml.", "p5.48xlarge.x", "p5;rm", "p5 5",
                                   "ml.t3.medium.x", "z1d.large", "p5\nx", "../p5"])
def test_unknown_instance_types(scratch, value):
    check(verify_cli.main, Case(f"inst-{value!r}", ("parse", "good.log", "--instance-type",
                                                    value), 2), scratch)


@pytest.mark.parametrize("option,value", [("--expect-nodes", "0"), ("--expect-nodes", "abc"),
                                          ("--expect-nodes", "-1"), ("--expect-provider", ""),
                                          ("--expect-provider", "efa;rm -rf /")])
def test_bad_numbers(scratch, option, value):
    check(verify_cli.main, Case(f"parse{option}{value}", ("parse", "good.log", option, value),
                                2, option), scratch)


@pytest.mark.parametrize("cli,argv,line", [
    ("verify", ("parse", "--foo"), "efa-verify parse: error: no such option '--foo'. "
                                   "(see efa-verify parse --help)"),
    ("verify", ("parse",), "efa-verify parse: error: missing argument 'PATHS...'. "
                           "(see efa-verify parse --help)"),
    ("verify", ("nope",), "efa-verify: error: no such command 'nope'. (see efa-verify --help)"),
    ("verify", ("--nope",), "efa-verify: error: no such option '--nope'. (see efa-verify --help)"),
    ("verify", ("parse", "good.log", "--expect-nodes", "abc"),
     "efa-verify parse: error: invalid value for '--expect-nodes': 'abc' is not a whole "
     "number (ASCII digits) (see efa-verify parse --help)"),
    ("verify", ("parse", "good.log", "--format", "x"), None),
    ("verify", ("run", "--timeout", "-5"), None),
    ("verify", ("static", "--root"), None),
    ("host", ("render",), "efakit render: error: missing argument 'FRAMEWORK'. "
                          "(see efakit render --help)"),
    ("host", ("build", "--nope"), None),
    ("host", ("build", "pytorch", "--ca-bundle", "/tmp"), None),
    ("host", ("report",), None),
    ("host", ("sagemaker-verify", "--instance-count", "x"), None),
    ("host", ("frobnicate",), "efakit: error: no such command 'frobnicate'. "
                              "(see efakit --help)"),
])
def test_usage_errors_are_one_line(scratch, cli, argv, line):
    """click's usage errors (unknown option or command, missing argument, a value of the
    wrong type) are one line naming the command and where its help is, exit 2."""
    main, prog = (verify_cli.main, "efa-verify") if cli == "verify" else (host_cli.main, "efakit")
    err = check(main, Case(f"usage-{cli}-{'-'.join(argv)}", argv, 2), scratch)
    assert err.startswith(f"{prog}") and ": error: " in err and "--help)" in err, err
    if line:
        assert err == line + "\n"


HOSTFILES = {
    "badfield": "node1 slots=8\nnode2 foo=bar\n",
    "slots-word": "node1 slots=x\n",
    "slots-zero": "node1 slots=0\n",
    "slots-neg": "node1 slots=-2\n",
    "dup": "node1\nnode1\n",
    "shell": "node1;rm -rf /\n",
    "slash": "bad/host\n",
    "empty": "",
    "comments-only": "# none\n\n",
    "latin1": "n\xe9ud\n",
}


@pytest.mark.parametrize("name", sorted(HOSTFILES))
def test_bad_hostfiles(scratch, name):
    path = scratch / f"hf-{name}"
    path.write_bytes(HOSTFILES[name].encode("latin-1"))
    check(verify_cli.main, Case(f"hostfile-{name}", ("run", "--hostfile", path.name,
                                                     "--output-dir", "r"), 2), scratch)


@pytest.mark.parametrize("path", ["fifo", "binary", "emptydir", "loop1", "nope", "/dev/zero"])
def test_hostfile_paths_that_are_no_hostfile(scratch, path):
    check(verify_cli.main, Case(f"hostfile-path-{path}", ("run", "--hostfile", path,
                                                          "--output-dir", "r"), 2), scratch)


@pytest.mark.parametrize("nodelist", [
    "n[0-99999999]", "p5-[001-", "p5-]1[", "p5-[a-c]", "n[3-1]", "n[[1-2]]", "a,,b",
    "n[1-]", "n[]", "a[0-999]-b[0-999]", "n[0-20000]", "bad/host[1-2]", "n[1-2];rm",
])
def test_bad_slurm_node_lists(scratch, nodelist):
    check(verify_cli.main, Case(f"slurm-{nodelist}", ("run", "--output-dir", "r"), 2,
                                "SLURM_JOB_NODELIST", env={"SLURM_JOB_NODELIST": nodelist}),
          scratch)


IMAGE_ENVS = {
    "list": "[1]",
    "wrongtypes": '{"versions": "x", "env": 5}',
    "versions-list": '{"versions": [], "env": {}}',
    "env-int-values": '{"versions": {}, "env": {"X": 5}}',
    "versions-nested": '{"versions": {"nccl": {"a": 1}}, "env": {}}',
    "no-env": '{"versions": {}}',
    "notjson": "versions: {}",
    "truncated": '{"versions": {',
    "deep": "[" * 100000 + "]" * 100000,
    "nan": '{"versions": NaN, "env": {}}',
}


@pytest.mark.parametrize("name", sorted(IMAGE_ENVS))
@pytest.mark.parametrize("command", ["static", "env"])
def test_bad_image_env_records(scratch, name, command):
    (scratch / "ie.json").write_text(IMAGE_ENVS[name])
    argv = (("static", "--root", "emptydir", "--image-env", "ie.json") if command == "static"
            else ("env", "--shell", "--image-env", "ie.json", "--instance-type", "p5"))
    check(verify_cli.main, Case(f"{command}-imageenv-{name}", argv, 2), scratch)


@pytest.mark.parametrize("path", ["fifo", "binary", "emptydir", "loop1", "nope", "/dev/zero",
                                  "/proc/self/mem"])
def test_image_env_paths_that_are_no_record(scratch, path):
    check(verify_cli.main, Case(f"env-path-{path}", ("env", "--image-env", path,
                                                     "--instance-type", "p5"), 2), scratch)


@pytest.mark.parametrize("config", ['{"current_instance_type": 5}', "[1]", "garbage",
                                    '{"current_instance_type": ["p5"]}',
                                    '{"current_instance_type": "ml.nope"}'])
def test_broken_sagemaker_resource_config_is_not_a_detection(scratch, config):
    (scratch / "ie.json").write_text('{"versions": {}, "env": {}}')
    (scratch / "rc.json").write_text(config)
    err = check(verify_cli.main, Case("env-smcfg-bad", ("env", "--shell", "--image-env",
                                                        "ie.json"), 0,
                                      env={"EFAKIT_SM_RESOURCE_CONFIG": "rc.json",
                                           "EFAKIT_IMDS": "off", "EFAKIT_VERBOSE": "1"}),
                scratch)
    assert "keeping the image's environment" in err or "no profile" in err


@pytest.fixture
def good_result(scratch):
    from click.testing import CliRunner

    result = CliRunner().invoke(verify_cli.main, ["parse", str(scratch / "good.log"), "--json",
                                                  "--instance-type", "p4d"])
    (scratch / "good.json").write_text(result.stdout)
    return json.loads(result.stdout)


def _mutated(result: dict, key: str, value: object) -> str:
    data = json.loads(json.dumps(result))
    data[key] = value
    return json.dumps(data)


@pytest.mark.parametrize("name,text", [
    ("schema2", '{"schema_version": 2}'), ("minimal", '{"schema_version": 1}'),
    ("list", "[1]"), ("yaml", "schema_version: 1\n"), ("truncated", '{"schema_version": 1'),
    ("deep", "[" * 100000 + "]" * 100000), ("nan", '{"schema_version": NaN}'),
    ("empty", ""), ("null", "null"),
])
def test_bad_results_for_report(scratch, name, text):
    (scratch / "r.json").write_text(text)
    check(host_cli.main, Case(f"report-{name}", ("report", "r.json"), 2), scratch)


@pytest.mark.parametrize("key,value", [
    ("verdict", "maybe"), ("verdict", None), ("checks", "x"), ("checks", [{"name": 5}]),
    ("tests", {"a": 1}), ("nodes", "two"), ("tool", None), ("ranks_detail", 5),
    ("busbw_avg_GBps", "fast"), ("errors", "x"),
])
def test_results_that_break_the_schema(scratch, good_result, key, value):
    (scratch / "r.json").write_text(_mutated(good_result, key, value))
    check(host_cli.main, Case(f"report-{key}-{value!r}", ("report", "r.json"), 2,
                              "not a valid efa-verify result"), scratch)


@pytest.mark.parametrize("path", ["fifo", "binary", "emptydir", "loop1", "nope", "/dev/zero",
                                  "/proc/self/mem", "afile/x"])
def test_report_paths_that_are_no_result(scratch, path):
    check(host_cli.main, Case(f"report-path-{path}", ("report", path), 2), scratch)


@pytest.mark.parametrize("option,target", [
    ("--markdown", "/proc/x.md"), ("--markdown", "afile/x.md"), ("--markdown", "emptydir"),
    ("--markdown", "/sys/kernel/x.md"), ("--plot", "/proc/x.png"), ("--plot", "afile/x.png"),
    ("--plot", "emptydir"),
])
def test_report_outputs_that_cannot_be_written(scratch, good_result, option, target):
    from click.testing import CliRunner

    before = sorted(p.name for p in scratch.iterdir())
    old = os.getcwd()
    os.chdir(scratch)
    try:
        result = CliRunner().invoke(host_cli.main, ["report", "good.json", option, target])
    finally:
        os.chdir(old)
    # The table goes to stdout first; the refusal is one line on stderr.
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "cannot write" in result.stderr
    assert not (result.exception and not isinstance(result.exception, SystemExit))
    assert sorted(p.name for p in scratch.iterdir()) == before


SM = ("sagemaker-verify", "--image-uri",
      "123456789012.dkr.ecr.us-east-1.amazonaws.com/efakit-pytorch:t1",
      "--role", "arn:aws:iam::123456789012:role/EfakitSageMaker", "--output", "s3://bucket/pfx",
      "--dry-run")


@pytest.mark.parametrize("extra", [
    ("--instance-count", "100000"), ("--instance-count", "1"), ("--instance-count", "-3"),
    ("--subnets", "subnet-1", "--security-groups", ",,,"), ("--local",),
    ("--job-name", "bad name!"), ("--job-name", "x" * 200), ("--max-run", "5"),
    ("--instance-type", "ml.t3.medium"), ("--instance-type", "g5"), ("--region", "eu-west-1"),
])
def test_sagemaker_verify_refuses_before_any_call(scratch, extra):
    check(host_cli.main, Case(f"sm-{'-'.join(extra)[:30]}", (*SM, *extra), 2), scratch)


def _log_input(scratch, case_id: str) -> tuple[tuple[str, ...], bytes | None]:
    """The argv and stdin of one of the audit's parse-* verdict cases, its file made here."""
    import gzip

    good = (scratch / "good.log").read_bytes()
    files = {"empty.log": b"", "nul.log": b"\x00" * (5 << 20),
             "cronly.log": good.replace(b"\n", b"\r"), "utf16.log": good.decode().encode("utf-16"),
             "badutf8.log": good.replace(b"NCCL INFO Using", b"NCCL INFO \xff\xfe Using"),
             "cut.log": good[:good.rindex(b"NCCL INFO") + 14],
             "notgz.log.gz": b"\x1f\x8b" + bytes(range(256)) * 40,
             "trunc.log.gz": gzip.compress(good)[:-200],
             "claims.log": b"h:1:2 [0] NCCL INFO GDR 1\n# Avg bus bandwidth    : 42.0\n"}
    p4d = ("--instance-type", "p4d")  # good.log is a healthy p4d job
    for name, data in files.items():
        if case_id == f"parse-{name.split('.')[0]}":
            (scratch / name).write_bytes(data)
            return (name, *p4d), None
    if case_id == "parse-many":
        (scratch / "many").mkdir()
        for i in range(5000):
            (scratch / "many" / f"r{i}.log").write_bytes(b"x\n")
    if case_id == "parse-dirloop":
        (scratch / "loopdir").mkdir()
        (scratch / "loopdir" / "up").symlink_to("..")
    return {"parse-good": (("good.log", *p4d), None),
            "parse-binary": (("binary",), None), "parse-many": (("many",), None),
            "parse-dirloop": (("loopdir",), None),
            "parse-procdir": (("/proc/self/fdinfo",), None),
            "parse-sysfile": (("/sys/kernel/mm/transparent_hugepage/enabled",), None),
            "parse-stdin-empty": (("-",), b""), "parse-stdin-bin": (("-",), os.urandom(200_000)),
            "parse-stdin-twice": (("-", "-", *p4d), good),
            "inst-g5": (("good.log", "--instance-type", "g5"), None)}[case_id]


LOG_VERDICTS = {  # an honest verdict (0 pass, 1 fail, 3 inconclusive), or a refusal (2)
    # good.log is a healthy 2-node p4d job: what can be read of it (cut, bad UTF-8
    # inside, twice on stdin) still passes; what is no evidence is inconclusive.  A
    # truncated .gz lost the rest of the job: inconclusive, since the lost part could
    # have held a failure (issue #24: mangling never improves a verdict).
    "parse-good": 0, "parse-empty": 3, "parse-nul": 3, "parse-cronly": 3, "parse-utf16": 3,
    "parse-badutf8": 0, "parse-cut": 0, "parse-notgz": 3, "parse-trunc": 3, "parse-claims": 3,
    "parse-binary": 3, "parse-many": 3, "parse-dirloop": 2, "parse-procdir": 3,
    "parse-sysfile": 3, "parse-stdin-empty": 3, "parse-stdin-bin": 3, "parse-stdin-twice": 0,
    "inst-g5": 0,
}


@pytest.mark.parametrize("case_id", sorted(LOG_VERDICTS))
def test_logs_that_are_poor_evidence_get_an_honest_verdict(scratch, case_id):
    argv, stdin = _log_input(scratch, case_id)
    check(verify_cli.main, Case(case_id, ("parse", *argv), LOG_VERDICTS[case_id], stdin=stdin),
          scratch)


NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/efakit-test.sock"}


VERIFIER_REFUSALS = [
    ("static-rootfile", ("static", "--root", "good.log"), 2),
    ("static-rootmissing", ("static", "--root", "/nonexistent"), 2),
    ("env-badinst", ("env", "--instance-type", "bogus"), 2),
    ("preflight-badinst", ("preflight", "--instance-type", "nope"), 2),
    ("run-outdir-proc", ("run", "--hosts", "localhost", "--output-dir", "/proc/x"), 2),
    ("sm-nocfg", ("sagemaker",), 2),
]


@pytest.mark.parametrize("case_id,argv,code", VERIFIER_REFUSALS,
                         ids=[c[0] for c in VERIFIER_REFUSALS])
def test_verifier_commands_refuse_in_one_line(scratch, case_id, argv, code):
    """The audit's static, env, preflight, run and sagemaker refusals."""
    (scratch / "ie.json").write_text('{"versions": {}, "env": {}}')
    argv = (*argv, "--image-env", "ie.json") if argv[0] in ("env", "preflight") else argv
    check(verify_cli.main, Case(case_id, argv, code), scratch)


def test_the_entrypoints_instance_type_is_checked_like_the_option(scratch):
    (scratch / "ie.json").write_text('{"versions": {}, "env": {}}')
    check(verify_cli.main, Case("env-EFAKIT_INSTANCE_TYPE", ("env", "--shell", "--image-env",
                                                             "ie.json"), 2,
                                env={"EFAKIT_INSTANCE_TYPE": "bogus"}), scratch)


ENGINE_REFUSALS = [
    ("gate-noimage", ("gate", "--out", "emptydir/gate"), 2),
    ("gate-img", ("gate", "some-image", "--out", "emptydir/gate"), 4),
    ("gate-badpolicy", ("gate", "some-image", "--policy", "binary"), 2),
    ("gate-badpush", ("gate", "some-image", "--push", "not a uri!!"), 2),
    ("base-nodocker", ("base-image", "--mirror", "emptydir"), 4),
]


@pytest.mark.parametrize("case_id,argv,code", ENGINE_REFUSALS,
                         ids=[c[0] for c in ENGINE_REFUSALS])
def test_engine_commands_without_an_engine(scratch, case_id, argv, code):
    """Without a Docker engine (DOCKER_HOST points nowhere) gate and base-image say so in
    one line; a bad policy or push target is refused before the engine is asked."""
    check(host_cli.main, Case(case_id, argv, code, env=NO_ENGINE), scratch)


def test_the_same_file_for_two_reports_is_refused(scratch):
    check(verify_cli.main, Case("out-same", ("parse", "good.log", "-o", "same", "--junit",
                                             "same"), 2), scratch)


def test_plotting_a_result_without_rows(scratch):
    from click.testing import CliRunner

    empty = CliRunner().invoke(verify_cli.main, ["parse", "-", "--json"], input=b"")
    (scratch / "e.json").write_text(empty.stdout)
    check(host_cli.main, Case("report-plot-noro", ("report", "e.json", "--plot", "p.png"), 2,
                              "no nccl-tests rows"), scratch)


def test_a_closed_stdout_is_quiet(scratch):
    """`efa-verify parse ... | head -c 10`: the reader goes away; no traceback, at most
    one line, the verdict's exit code or the one for a broken stdout."""
    import subprocess

    from click.testing import CliRunner

    from tests import procs

    proc = procs.start([*procs.VERIFY, "parse", "good.log", "--json"], cwd=scratch,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    verdict = CliRunner().invoke(verify_cli.main, ["parse", str(scratch / "good.log")]).exit_code
    assert proc.wait(timeout=60) in (verdict, 2) and "Traceback" not in err, err
    assert len(err.splitlines()) <= 1, err
