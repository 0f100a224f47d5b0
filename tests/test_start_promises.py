"""The start-time env step never changes a variable the user set, on any instance family
(README: "a variable the user set is never touched").  Properties over every instance
profile, exact or ambiguous detection, and any mix of user-set variables and values
(the image's own value included), for the record a current image writes and for the
record of an older image that baked the start defaults into ENV."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildkit.render import render_context
from buildkit.spec import load_spec
from tests.conftest import FIXTURES
from tests.procs import VERIFY
from verify import startenv
from verify.detect import Detection
from verify.envrules import safe_value, start_changes
from verify.profiles import all_profiles

PROFILES = sorted(all_profiles().values(), key=lambda p: p.name)
VALUES = st.sampled_from(["0", "1", "", "efa", "a b", "$HOME"])


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict:
    ctx = render_context(load_spec(FIXTURES / "specs" / "seed" / "pytorch.yaml"), "ec2",
                         tmp_path_factory.mktemp("start") / "ctx")
    return startenv.load_image_env(ctx / "efakit" / "image-env.json")


def _ruled(record: dict) -> list[str]:
    """Every variable the step could touch: defaults, baked ENV, any instance's change."""
    changed = {c.var for p in PROFILES for c in start_changes(record["versions"], p)}
    return sorted(changed | set(record.get("start_defaults") or {}) | set(record["env"]))


def _touched(plan: startenv.StartPlan) -> set[str]:
    """Names the eval'd lines would change (`... || export X=v`, `unset X`)."""
    return {m.group(1) for line in startenv.shell_lines(plan)
            for m in re.finditer(r"(?:export|unset) ([A-Za-z_][A-Za-z0-9_]*)", line)}


def _environ(draw, record: dict, baked: dict) -> dict:
    names = draw(st.lists(st.sampled_from(_ruled(record)), unique=True, max_size=6))
    return {n: draw(st.one_of(VALUES, st.just(baked.get(n) or "1"))) for n in names}


def _detection(draw) -> Detection:
    if draw(st.booleans()):
        return Detection(draw(st.sampled_from(PROFILES)), "test", "exact")
    candidates = draw(st.lists(st.sampled_from(PROFILES), min_size=2, max_size=3,
                               unique_by=lambda p: p.name))
    return Detection(None, "test", "gpu model", tuple(candidates))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_variable_present_at_start_is_never_changed(record, data):
    baked = {**record["env"], **(record.get("start_defaults") or {})}
    environ = _environ(data.draw, record, baked)
    plan = startenv.plan(record, _detection(data.draw), environ)
    assert not _touched(plan) & set(environ)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_on_an_older_image_a_value_unlike_the_images_is_the_users(record, data):
    """Older images baked the start defaults into ENV: a value present at start may be
    the image's own, but one that differs from it can only be the user's."""
    old = {**record, "env": {**record["env"], **(record.get("start_defaults") or {})},
           "start_defaults": {}}
    environ = _environ(data.draw, record, old["env"])
    plan = startenv.plan(old, _detection(data.draw), environ)
    for var in _touched(plan) & set(environ):
        assert environ[var] == old["env"].get(var), var


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_an_ambiguous_instance_gets_only_the_changes_every_candidate_needs(record, data):
    detection = _detection(data.draw)
    plan = startenv.plan(record, detection, {})
    for profile in detection.candidates or (detection.profile,):
        assert set(plan.changes) <= set(start_changes(record["versions"], profile))


def test_g4dn_and_p4d_together_leave_device_rdma_as_the_image_has_it(record):
    """Hand-picked: g4dn (no RDMA read) unsets FI_EFA_USE_DEVICE_RDMA, p4d keeps it."""
    by_name = {p.name: p for p in PROFILES}
    detection = Detection(None, "test", "gpu model", (by_name["g4dn.metal"], by_name["p4d.24xlarge"]))
    assert "FI_EFA_USE_DEVICE_RDMA" not in {c.var for c in startenv.plan(record, detection, {}).changes}


@pytest.mark.parametrize("value", ["0", "", "efa"])
def test_on_an_older_image_a_users_device_rdma_survives_g4dn(record, value):
    """Hand-picked: the image baked FI_EFA_USE_DEVICE_RDMA=1 into ENV; g4dn's rules unset
    it, but a different value at start is the user's and stays."""
    old = {**record, "env": {**record["env"], **(record.get("start_defaults") or {})},
           "start_defaults": {}}
    g4dn = next(p for p in PROFILES if p.name == "g4dn.metal")
    plan = startenv.plan(old, Detection(g4dn, "test", "exact"), {"FI_EFA_USE_DEVICE_RDMA": value})
    assert startenv.shell_lines(plan) == [] and [c.var for c in plan.kept] == \
        ["FI_EFA_USE_DEVICE_RDMA"]


# --- issue #24, attack-1: the same variable in the record's env, its start_defaults, or both


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_a_present_variable_is_never_changed_wherever_the_record_names_it(record, data):
    """Every instance family (exact or ambiguous), and a record whose `env`, whose
    `start_defaults`, both or neither name each ruled variable, with any value: a
    variable present at start is never in an export or unset line, whatever its value
    (the image's own included)."""
    ruled = _ruled(record)
    env, defaults = {}, {}
    for var in data.draw(st.lists(st.sampled_from(ruled), unique=True, max_size=6)):
        where = data.draw(st.sampled_from(["env", "start_defaults", "both"]))
        value = data.draw(VALUES)
        if where in ("env", "both"):
            env[var] = value
        if where in ("start_defaults", "both"):
            # a record's start default is a safe value (schema; attack-2 I-1)
            defaults[var] = data.draw(st.one_of(st.just(value), VALUES).filter(safe_value))
    mixed = {**record, "env": {**record["env"], **env},
             "start_defaults": {**(record.get("start_defaults") or {}), **defaults}}
    baked = {**mixed["env"], **mixed["start_defaults"]}
    environ = _environ(data.draw, mixed, baked)
    plan = startenv.plan(mixed, _detection(data.draw), environ)
    assert not _touched(plan) & set(environ), (environ, startenv.shell_lines(plan))


def test_attack_d1_an_older_records_own_value_set_by_the_user_is_not_unset(tmp_path):
    """attack-1 D-1: the record bakes FI_EFA_USE_DEVICE_RDMA=1 in env (no start_defaults);
    the user exports the same value; g4dn's rules want it unset.  It stays, and the step
    says what it kept."""
    record = tmp_path / "r.json"
    record.write_text(json.dumps({"versions": {"aws_ofi_nccl": "1.5.0", "libfabric": "1.16.0",
                                               "nccl": "2.12.7"},
                                  "env": {"FI_EFA_USE_DEVICE_RDMA": "1"}}))
    result = subprocess.run([*VERIFY, "env", "--shell", "--image-env", str(record),
                             "--instance-type", "g4dn.metal"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "EFAKIT_IMDS": "off",
                                 "FI_EFA_USE_DEVICE_RDMA": "1"}, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "FI_EFA_USE_DEVICE_RDMA" not in result.stdout
    assert "kept as found FI_EFA_USE_DEVICE_RDMA=1" in result.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash: not installed")
def test_attack_d2_a_shells_unexported_variable_is_the_users_too(tmp_path):
    """attack-1 D-2: the plan sees only exported variables; the eval'd lines guard each
    export, so the evaluating shell's own unexported variable keeps its value."""
    record = tmp_path / "r.json"
    record.write_text(json.dumps({"versions": {}, "env": {},
                                  "start_defaults": {"NCCL_MINE": "overwritten",
                                                     "FI_NEW": "x,y"}}))
    script = (f'NCCL_MINE=mine; eval "$({" ".join(VERIFY)} env --shell --image-env {record} '
              f'--instance-type p5)"; printf "%s|%s" "$NCCL_MINE" "$FI_NEW"')
    out = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "EFAKIT_IMDS": "off"},
                         timeout=60, check=False)
    assert out.stdout == "mine|x,y", out.stderr


ALLOWED = re.compile(r"(?:FI|NCCL)_[A-Za-z0-9_]*|RDMAV_FORK_SAFE")


@settings(max_examples=60, deadline=None)
@given(name=st.one_of(
    st.sampled_from(["BASH_ENV", "ENV", "LD_PRELOAD", "PATH", "PROMPT_COMMAND", "IFS", "PS4",
                     "UID", "SHELLOPTS", "LD_LIBRARY_PATH", "HOME", "FI_PROVIDER",
                     "NCCL_DEBUG", "RDMAV_FORK_SAFE", "FI", "NCCL", "fi_x"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)))
def test_the_record_exports_only_allowed_names(tmp_path_factory, name):
    """An allow-list by data (env_rules.yaml `start_names`): FI_*, NCCL_* and the rules'
    own variables load; any other name is one ValueError line naming it."""
    path = tmp_path_factory.mktemp("names") / "r.json"
    path.write_text(json.dumps({"versions": {}, "env": {}, "start_defaults": {name: "v"}}))
    if ALLOWED.fullmatch(name):
        assert startenv.load_image_env(path)["start_defaults"] == {name: "v"}
    else:
        with pytest.raises(ValueError, match="start_defaults may not name") as err:
            startenv.load_image_env(path)
        assert "\n" not in str(err.value)


def test_attack_i1_bash_env_in_the_record_is_refused_in_one_line(tmp_path):
    """attack-1 I-1: BASH_ENV exported at start would make the next bash run a file."""
    record = tmp_path / "r.json"
    record.write_text(json.dumps({"versions": {}, "env": {},
                                  "start_defaults": {"BASH_ENV": str(tmp_path / "evil.sh")}}))
    result = subprocess.run([*VERIFY, "env", "--shell", "--image-env", str(record),
                             "--instance-type", "p5"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "EFAKIT_IMDS": "off"}, timeout=60,
                            check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "BASH_ENV" in result.stderr


@settings(max_examples=30, deadline=None)
@given(width=st.integers(19, 6000) | st.integers(19, 126), key=st.sampled_from(["aws_ofi_nccl", "libfabric", "nccl"]))
def test_a_version_of_any_length_is_one_line(tmp_path_factory, width, key):
    """attack-1 TB-1: a 5000-digit version made int() raise past Python's 4300-digit
    limit at every container start; any long digit string is one VersionError line."""
    path = tmp_path_factory.mktemp("ver") / "r.json"
    path.write_text(json.dumps({"versions": {key: "9" * width + ".1"}, "env": {}}))
    # past 128 characters the schema refuses it, below that parse_version does
    with pytest.raises(ValueError, match=f"versions.{key}: .*(not a version|longer than)") as err:
        startenv.load_image_env(path)
    assert len(str(err.value)) < 300


# --- attack-2 I-1: nothing in a record runs, whatever the evaluating shell declared ------

PRESETS = {"declare -i": "declare -i {n}", "declare -a": "declare -a {n}",
           "readonly": "readonly {n}=ro", "exported": "export {n}=user",
           "integer set": "declare -i {n}=7", "unset": ""}
HOSTILE = st.sampled_from(["a[$(touch pwned)]", "$(touch pwned)", "`touch pwned`",
                           "x[`touch pwned`]", "1;touch pwned", "a b", "512K", "1"])


def _eval_in_bash(lines: list[str], presets: dict[str, str], cwd) -> str:
    """`declare -p` of the preset names after evaluating `lines` in a bash that
    declared them as `presets` says, run in `cwd`."""
    setup = "; ".join(PRESETS[how].format(n=name) for name, how in presets.items()
                      if PRESETS[how])
    show = "; ".join(f"declare -p {name} 2>/dev/null || echo unset {name}"
                     for name in sorted(presets))
    script = f'{setup}\n{show}\necho ---\neval "$1"\n{show}\n'
    proc = subprocess.run(["bash", "-c", script, "_", "\n".join(lines)], cwd=cwd,
                          capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash: not installed")
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_eval_of_env_shell_runs_nothing_and_keeps_a_declared_variable(record, tmp_path_factory,
                                                                      data):
    names = data.draw(st.lists(st.from_regex(r"NCCL_Z[A-Z]{1,3}", fullmatch=True),
                               min_size=1, max_size=3, unique=True))
    values = {n: data.draw(st.one_of(HOSTILE, st.text(max_size=12))) for n in names}
    presets = {n: data.draw(st.sampled_from(sorted(PRESETS))) for n in names}
    work = tmp_path_factory.mktemp("eval")
    path = work / "ie.json"
    path.write_text(json.dumps({**record, "start_defaults": values}))
    try:
        loaded = startenv.load_image_env(path)
    except ValueError:  # refused: one line at load, nothing emitted, nothing runs
        assert not all(re.fullmatch(r"[A-Za-z0-9_.,:/=+@%-]*", v) for v in values.values())
        return
    lines = startenv.shell_lines(startenv.plan(loaded, _detection(data.draw), {}))
    before, _, after = _eval_in_bash(lines, presets, work).partition("---\n")
    assert sorted(p.name for p in work.iterdir()) == ["ie.json"]  # nothing ran
    kept = [n for n in names if presets[n] != "unset"]
    for name in kept:  # a variable the shell held, declared or set, is left alone
        want = [ln for ln in before.splitlines() if f" {name}" in ln]
        assert [ln for ln in after.splitlines() if f" {name}" in ln] == want


def test_attack2_i1_a_declared_integer_does_not_run_the_value(tmp_path):
    """attack-2 I-1: `declare -i NCCL_ZZ` then eval of `env --shell` ran `a[$(cmd)]`."""
    path = tmp_path / "arith.json"
    path.write_text(json.dumps({"versions": {}, "env": {},
                                "start_defaults": {"NCCL_ZZ": "a[$(touch pwned_arith)]"}}))
    proc = subprocess.run([*VERIFY, "env", "--shell", "--image-env", str(path),
                           "--instance-type", "p5"], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert len(proc.stderr.splitlines()) == 1 and "NCCL_ZZ" in proc.stderr
    # a safe value, declared integer in the evaluating shell: not assigned, not exported
    path.write_text(json.dumps({"versions": {}, "env": {}, "start_defaults": {"NCCL_ZZ": "3"}}))
    out = subprocess.run([*VERIFY, "env", "--shell", "--image-env", str(path),
                          "--instance-type", "p5"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    shown_ = subprocess.run(["bash", "-c", 'declare -i NCCL_ZZ; eval "$1"; declare -p NCCL_ZZ',
                             "_", out], capture_output=True, text=True, timeout=30,
                            check=False, cwd=tmp_path).stdout
    assert shown_.strip() == "declare -i NCCL_ZZ"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arith.json"]
