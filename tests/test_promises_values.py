"""The README's promises about values, as properties over generated inputs (issue #24).

* A bad value is one line on stderr and exit 2, never a traceback; a value that is
  accepted is what it claims to be (a finite number in range, ASCII digits, a host
  name that is no option and needs no quoting).
* `efa-verify env --shell` output, eval'd by bash in an empty folder, exports exactly
  the record's strings and runs nothing (no file appears); a record whose names are
  not shell names or whose values are not strings is refused in one line.
* A variable present at start is never changed by the start step, on every instance
  family of the profile table and any set of GPU-model candidates.
* An output is never an input: however the same file is named (the same path, `./`,
  an absolute path, a symbolic or a hard link), the command refuses before any work and
  the input is unchanged.

Budgets come from the Hypothesis profile (tests/conftest.py; `make fuzz` for more).
The CLIs run in-process through click's runner, as tests/badinput.py does.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildkit import cli as host_cli
from buildkit.render import render_context
from buildkit.spec import load_spec
from tests.conftest import FIXTURES, ROOT
from tests.test_parse_formats import good, table
from verify import cli as verify_cli
from verify import startenv
from verify.boundary import values
from verify.boundary.values import BadValue
from verify.detect import Detection
from verify.envrules import safe_value, start_changes
from verify.profiles import all_profiles

# A process per example: half the profile's budget.
SLOW = settings(max_examples=max(10, settings().max_examples // 2),
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# Pieces attackers and typos are made of: they are glued into values below.
PIECES = ["\n", " ", "'", '"', "$(touch pwned)", "`touch pwned`", ",", "-", "--", "=",
          ";", "|", "&", "#", "\t", "\\", "²", "١", "٣", "nan", "NaN", "inf", "-inf",
          "Infinity", "1e999", "9" * 60, "0", "1", "7", "0.5", "1_000", " 4", "0x10", "+3",
          "\ud800", "\x1b[31m", "\x00", "\r", "p5", "a", "node-1", ".", "/", ":", "€"]
hostile = st.one_of(st.text(max_size=30),
                    st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("".join))


def _one_line_or_ok(result, ok_codes=(0, 1, 3)) -> bool:
    """The CLI promise: a normal exit, or exit 2 with exactly one line and no traceback.
    True when the value was accepted."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.stderr
    if result.exit_code == 2:
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert not any(c in result.stderr for c in "\x1b\x00\r"), result.stderr
        return False
    assert result.exit_code in ok_codes, (result.exit_code, result.stderr)
    return True


# --- the value functions ---------------------------------------------------------------


@given(hostile)
def test_digits_accept_only_ascii_whole_numbers_in_bounds(text):
    try:
        number = values.digits(text, "n", 0, 1000)
    except BadValue as exc:
        assert "\n" not in str(exc) and str(exc).startswith("n: ")
        return
    assert re.fullmatch(r"[+-]?[0-9]+", text.strip(" ")) and 0 <= number <= 1000
    assert number == int(text)


@given(st.one_of(hostile, st.floats(), st.integers(), st.booleans(), st.none()))
def test_finite_is_finite_and_in_bounds(value):
    try:
        number = values.finite(value, "x", 1, 3600)
    except BadValue as exc:
        assert "\n" not in str(exc)
        return
    assert math.isfinite(number) and 1 <= number <= 3600 and not isinstance(value, bool)


@given(hostile)
def test_a_host_name_is_never_an_option_and_needs_no_quoting(text):
    try:
        host = values.host_name(text)
    except BadValue as exc:
        assert "\n" not in str(exc)
        return
    assert not host.startswith("-") and shlex.quote(host) == host
    assert shlex.split(host) == [host] and "," not in host and len(host) <= 253


@given(hostile)
def test_a_shell_name_is_a_name_bash_exports(text):
    try:
        name = values.shell_name(text)
    except BadValue:
        assert not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text)
        return
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and "\n" not in name


@given(st.text())
def test_printable_text_has_no_control_character_and_is_utf8(text):
    shown = values.printable(text)
    shown.encode("utf-8")  # no lone surrogate left
    assert all(c == "\t" or c.isprintable() for c in shown)
    if all(c == "\t" or (c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF) for c in text):
        assert shown == text  # printable text is left alone


# --- options of the CLIs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("logs")
    (folder / "rank.log").write_text(good() + good("node-b", 1, 0) + table())
    return folder


def _parse(log_dir: Path, *argv: str):
    return CliRunner().invoke(verify_cli.main, ["parse", str(log_dir / "rank.log"), *argv])


@FIXTURE_OK
@given(hostile)
def test_parse_baseline_tolerance(log_dir, text):
    if _one_line_or_ok(_parse(log_dir, "--instance-type", "p5", "--baseline-tolerance", text)):
        assert 0 <= values.finite(text, "t") <= 0.99


@FIXTURE_OK
@given(hostile)
def test_parse_expect_nodes(log_dir, text):
    if _one_line_or_ok(_parse(log_dir, "--expect-nodes", text)):
        assert re.fullmatch(r"\+?[0-9]+", text.strip(" ")) and 1 <= int(text) <= 65536


@FIXTURE_OK
@given(hostile)
def test_parse_text_options_are_one_line_or_accepted(log_dir, text):
    for option in ("--instance-type", "--expect-provider", "--baseline"):
        _one_line_or_ok(_parse(log_dir, option, text))


def _param(command: click.Command, name: str) -> click.Parameter:
    return next(p for p in command.params if p.name == name)


@given(hostile)
def test_timeouts_of_run_and_sweep_are_finite_and_bounded(text):
    """--timeout, --stall-timeout (run, sweep) and --ssh-timeout: the options' own types."""
    from verify.sweep.cli import sweep

    for command, name in ((verify_cli.run, "timeout"), (verify_cli.run, "stall_timeout"),
                          (sweep, "timeout"), (verify_cli.sagemaker_cmd, "ssh_timeout")):
        param = _param(command, name)
        ctx = click.Context(command)
        try:
            seconds = param.type_cast_value(ctx, text)
        except click.BadParameter as exc:
            assert "\n" not in exc.format_message()
            continue
        assert math.isfinite(seconds) and 1 <= seconds <= values.MAX_SECONDS


# --- env --shell: eval'd by bash, it exports the record's strings and runs nothing ---------


@pytest.fixture(scope="module")
def seed_versions(tmp_path_factory) -> dict:
    ctx = render_context(load_spec(FIXTURES / "specs" / "seed" / "pytorch.yaml"), "ec2",
                         tmp_path_factory.mktemp("ctx"))
    return json.loads((ctx / "efakit" / "image-env.json").read_text())["versions"]


# Names the test's bash treats as plain variables ($_, $PPID, $SECONDS... are its own).
# The record may only export FI_*/NCCL_* names (env_rules.yaml `start_names`).
shell_names = st.from_regex(r"(?:FI|NCCL)_X[A-Za-z0-9_]{0,12}", fullmatch=True)
names = st.one_of(shell_names, hostile)
json_values = st.one_of(st.text(max_size=40), hostile, st.integers(), st.floats(
    allow_nan=False, allow_infinity=False), st.none(), st.booleans(),
    st.lists(st.text(max_size=5), max_size=2))


def _bash_exports(script: str, names: list[str], sandbox: Path) -> list[str]:
    """Eval `script` in bash inside `sandbox`, then print each name's value (or <unset>)."""
    program = ('cd "$1" || exit 9; shift; eval "$EFAKIT_SCRIPT" || exit 8; '
               'for n in "$@"; do if [ -n "${!n+x}" ]; then printf "%s\\0" "${!n}"; '
               'else printf "<unset>\\0"; fi; done')
    env = {"PATH": os.environ["PATH"], "EFAKIT_SCRIPT": script}
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-c", program, "bash",
                           str(sandbox), *names], capture_output=True, env=env, timeout=30,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash: not installed")
@SLOW
@given(defaults=st.one_of(
    st.dictionaries(shell_names, st.one_of(st.text(max_size=40), hostile), max_size=5),
    st.dictionaries(names, json_values, max_size=5)))
def test_env_shell_exports_the_records_strings_and_runs_nothing(seed_versions, tmp_path,
                                                                 defaults):
    sandbox = tmp_path / "sandbox"
    shutil.rmtree(sandbox, ignore_errors=True)
    sandbox.mkdir()
    record = tmp_path / "ie.json"
    record.write_text(json.dumps({"versions": seed_versions, "env": {},
                                  "start_defaults": defaults}))
    # the generated names are absent at start (a name that is no shell name cannot be set)
    env = {k: None for k in defaults if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)}
    result = CliRunner().invoke(verify_cli.main, ["env", "--shell", "--image-env", str(record),
                                                  "--instance-type", "p5"], env=env)
    fits = all(re.fullmatch(r"(?:FI|NCCL)_[A-Za-z0-9_]*", k) and isinstance(v, str)
               and safe_value(v)  # attack-2 I-1: no character a shell evaluates
               for k, v in defaults.items())
    if not fits:
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert "image env record" in result.stderr and result.stdout == ""
        return
    assert result.exit_code == 0, result.stderr
    changed = {c.var for c in start_changes(seed_versions, all_profiles()["p5.48xlarge"])}
    exported = {k: v for k, v in defaults.items() if k not in changed}
    # the bytes as written (the runner's .stdout turns \r\n into \n)
    got = _bash_exports(result.stdout_bytes.decode("utf-8"), sorted(exported), sandbox)
    assert got == [exported[k] for k in sorted(exported)]
    assert list(sandbox.iterdir()) == []  # nothing ran: no file appeared


# --- the start step never changes a variable present at start -------------------------


@pytest.fixture(scope="module")
def image_records(tmp_path_factory) -> list[dict]:
    """The image env records of the seed spec and of the shipped pytorch spec."""
    out = []
    for spec in (FIXTURES / "specs" / "seed" / "pytorch.yaml", ROOT / "images" / "pytorch.yaml"):
        ctx = render_context(load_spec(spec), "ec2", tmp_path_factory.mktemp("ctx"))
        out.append(startenv.load_image_env(ctx / "efakit" / "image-env.json"))
    return out


PROFILES = sorted(all_profiles())


def _rule_vars(record: dict) -> list[str]:
    names_ = {c.var for p in all_profiles().values()
              for c in start_changes(record["versions"], p)}
    return sorted(names_ | set(record.get("start_defaults") or {}) | {"NCCL_DEBUG", "PATH"})


def _rule_values(record: dict) -> list[str]:
    found = {v for v in (record.get("start_defaults") or {}).values()}
    for profile in all_profiles().values():
        for change in start_changes(record["versions"], profile):
            found |= {v for v in (change.value, change.image_value) if v is not None}
    return sorted(found | {""})


@FIXTURE_OK
@given(data=st.data())
def test_a_variable_present_at_start_is_never_changed(image_records, data):
    record = data.draw(st.sampled_from(image_records))
    changing = [n for n in PROFILES if start_changes(record["versions"], all_profiles()[n])]
    one = st.lists(st.sampled_from(changing or PROFILES), min_size=1, max_size=1)
    chosen = data.draw(st.one_of(one, one, st.lists(st.sampled_from(PROFILES), min_size=1,
                                                    max_size=3, unique=True)))
    profiles = [all_profiles()[n] for n in chosen]
    detection = (Detection(profiles[0], "--instance-type", chosen[0]) if len(profiles) == 1
                 else Detection(None, "gpu-model", "A100", tuple(profiles)))
    # Aim where a mistake would show: the variables these instances change, set by the
    # user to the image's own value, the instance's value, or anything else.
    changes = [c for p in profiles for c in start_changes(record["versions"], p)]
    aimed = {c.var: [v for v in (c.image_value, c.value) if v is not None] for c in changes}
    keys = st.sampled_from(sorted(aimed)) if aimed else st.sampled_from(_rule_vars(record))
    present = data.draw(st.dictionaries(st.one_of(keys, st.sampled_from(_rule_vars(record))),
                                        st.one_of(st.sampled_from(_rule_values(record)),
                                                  st.text(max_size=10)), min_size=1))
    for var in present:  # the image's or the instance's exact value, where there is one
        if aimed.get(var) and data.draw(st.booleans()):
            present[var] = data.draw(st.sampled_from(aimed[var]))
    start = startenv.plan(record, detection, present)
    touched = {c.var for c in start.changes} | {var for var, _ in start.defaults}
    assert not touched & set(present), (chosen, present, touched)
    text = "\n".join(startenv.shell_lines(start))
    for var in present:
        assert not re.search(rf"(export|unset) {var}\b", text)


# --- an output is never an input -------------------------------------------------------


RELATIONS = ["same", "dot", "absolute", "symlink", "hardlink", "dotdot"]


def _alias(target: Path, relation: str, cwd: Path) -> str:
    """Another name for `target` (in `cwd`)."""
    if relation == "same":
        return target.name
    if relation == "dot":
        return f"./{target.name}"
    if relation == "absolute":
        return str(target)
    if relation == "dotdot":
        return f"../{cwd.name}/{target.name}"
    alias = cwd / f"alias-{relation}"
    if not os.path.lexists(alias):
        (alias.symlink_to(target.name) if relation == "symlink" else os.link(target, alias))
    return alias.name


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _refused_and_unchanged(run, folder: Path) -> None:
    before = _snapshot(folder)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        result = run()
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "input" in result.stderr or "same file" in result.stderr, result.stderr
    assert _snapshot(folder) == before


@FIXTURE_OK
@given(option=st.sampled_from(["-o", "--junit", "--markdown"]),
       relation=st.sampled_from(RELATIONS), which=st.sampled_from(["log", "policy"]))
def test_parse_never_writes_over_an_input(tmp_path, option, relation, which):
    folder = tmp_path / "w"
    folder.mkdir(exist_ok=True)
    log, policy = folder / "rank.log", folder / "policy.yaml"
    log.write_text(good() + good("node-b", 1, 0) + table())
    policy.write_text("schema_version: 1\n")
    target = _alias(log if which == "log" else policy, relation, folder)
    _refused_and_unchanged(lambda: CliRunner().invoke(verify_cli.main, [
        "parse", "rank.log", "--policy", "policy.yaml", option, target]), folder)


@pytest.fixture(scope="module")
def result_json(tmp_path_factory, log_dir) -> bytes:
    out = tmp_path_factory.mktemp("r") / "r.json"
    CliRunner().invoke(verify_cli.main, ["parse", str(log_dir / "rank.log"), "--instance-type",
                                         "p5", "-o", str(out)])
    return out.read_bytes()


@FIXTURE_OK
@given(option=st.sampled_from(["--plot", "--markdown"]), relation=st.sampled_from(RELATIONS))
def test_report_never_writes_over_its_result(tmp_path, result_json, option, relation):
    folder = tmp_path / "w"
    folder.mkdir(exist_ok=True)
    (folder / "r.json").write_bytes(result_json)
    target = _alias(folder / "r.json", relation, folder)
    _refused_and_unchanged(lambda: CliRunner().invoke(host_cli.main, [
        "report", "r.json", option, target]), folder)


@FIXTURE_OK
@given(relation=st.sampled_from(["same", "dot", "absolute", "dotdot"]))
def test_baseline_record_never_writes_over_its_result(tmp_path, result_json, relation):
    """`--dir` names the result's folder (NAME.json there is the result) in any spelling."""
    folder = tmp_path / "w"
    folder.mkdir(exist_ok=True)
    (folder / "r.json").write_bytes(result_json)
    _refused_and_unchanged(lambda: CliRunner().invoke(verify_cli.main, [
        "baseline", "record", "r.json", "--name", "r", "--dir",
        str(Path(_alias(folder / "r.json", relation, folder)).parent)]), folder)
