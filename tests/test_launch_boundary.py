"""The launchers' promise as properties: a value given to `efakit launch` is refused in one
line with exit 2, or it reaches the generated file as exactly one word of what it was meant
to be, never as a second line, a second sbatch option or a second YAML key (issue #24).

The generated script is read the way sbatch and bash read it: `#SBATCH` lines split into
words as sbatch does (whitespace), the rest by `bash -n` and `shlex.split`.  The commands run
in-process through click (the same parsing and error handler as the CLI), so a few hundred
generated values cost seconds.
"""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildkit.cli import main
from verify.tables import load_table

DIGEST = "123456789012.dkr.ecr.us-west-2.amazonaws.com/efakit@sha256:" + "ab" * 32
# What attackers and typos put into options: newlines, spaces, quotes, $(), backticks,
# commas, colons, leading '-', unicode digits, NUL-free control characters.
NASTY = st.text(alphabet=st.sampled_from(list("ab-1/ ,:;'\"$`()\n\t=#%²٣\\*[]")) | st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=0, max_size=24)
SLURM_TEXT_OPTIONS = ("--exclude", "--nodelist", "--partition", "--job-name", "--output-dir",
                      "--time", "--image", "--arg")
SBATCH_RE = re.compile(r"#SBATCH --([a-z-]+)(?:=(\S+))?")
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def invoke(*args: str):
    return CliRunner().invoke(main, ["launch", *args], catch_exceptions=False)


def refused_in_one_line(result) -> bool:
    return result.exit_code == 2 and result.output.count("\n") <= 1 and result.output.strip() \
        and "Traceback" not in result.output


def check_script(text: str, tmp_path) -> list[str]:
    """The script parses, its #SBATCH lines are one option each, and the rest splits into
    shell words (a quoted value may hold a newline); returns the words."""
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    body = []
    for line in text.split("\n"):  # bash ends a line at \n only (not at \x1e)
        if line.startswith("#SBATCH"):
            assert SBATCH_RE.fullmatch(line), line
            assert len(line.split()) == 2, line  # sbatch splits on whitespace: one option
        else:
            body.append(line)
    return shlex.split("\n".join(body), comments=True)


@pytest.mark.parametrize("container", ["none", "pyxis"])
@pytest.mark.parametrize("option", SLURM_TEXT_OPTIONS)
def test_a_slurm_option_value_is_refused_or_stays_one_word(option, container, tmp_path):
    @SETTINGS
    @given(value=NASTY)
    def prop(value: str) -> None:
        args = ["slurm", "--instance-type", "p5", "--nodes", "4", "--container", container,
                option, value]
        if container == "pyxis" and option != "--image":
            args += ["--image", "ecr#efakit-test/pytorch:1.0"]
        result = invoke(*args)
        if result.exit_code != 0:
            assert refused_in_one_line(result), (value, result.output)
            return
        lines = check_script(result.output, tmp_path)
        sbatch = dict(SBATCH_RE.fullmatch(line).groups()
                      for line in result.output.split("\n") if line.startswith("#SBATCH"))
        if option in ("--exclude", "--nodelist", "--partition", "--job-name", "--time"):
            assert sbatch[option[2:]] == value.strip() or sbatch[option[2:]] == value
        elif option == "--arg":
            inner = [w for w in lines if "exec efa-verify" in w]
            assert inner and value in shlex.split(inner[0].split("exec ", 1)[1])
        elif option == "--output-dir":
            assert f"OUT={shlex.quote(value.rstrip('/') or '/')}" in result.output
        elif container == "pyxis":
            assert f"--container-image={value}" in lines

    prop()


@pytest.mark.parametrize("option", ["--name", "--namespace", "--output-dir", "--arg", "--image"])
def test_an_eks_option_value_is_refused_or_is_one_yaml_scalar(option):
    @SETTINGS
    @given(value=NASTY)
    def prop(value: str) -> None:
        args = ["eks", "--instance-type", "p5", "--nodes", "2", "--allow-tag", option, value]
        if option != "--image":
            args += ["--image", DIGEST]
        result = invoke(*args)
        if result.exit_code != 0:
            assert refused_in_one_line(result), (value, result.output)
            return
        docs = list(yaml.safe_load_all(result.output))
        assert len(docs) == 1 and set(docs[0]) == {"apiVersion", "kind", "metadata", "spec"}
        spec = docs[0]["spec"]["mpiReplicaSpecs"]
        launcher = spec["Launcher"]["template"]["spec"]["containers"][0]
        if option in ("--arg", "--output-dir"):
            assert value in shlex.split(launcher["command"][-1].split("exec ", 1)[1])
        elif option == "--image":
            assert launcher["image"] == value
        else:
            key = option[2:]
            assert docs[0]["metadata"][key] == value

    prop()


@pytest.mark.parametrize("args, message", [
    (["--gpus-per-node", "0"], "--gpus-per-node: 0 is less than 1"),
    (["--time", "0"], "--time '0': more than zero"),
    (["--time", "0-00:00:00"], "--time '0-00:00:00': more than zero"),
    (["--instance-type", "g5.xlarge"], "g5.xlarge has no EFA device"),
    (["--exclude", "a\ntouch /tmp/x"], "--exclude: node list"),
    (["--exclude", "p5-1 --export=ALL,LD_PRELOAD=/fsx/x.so"], "--exclude: node list"),
    (["--output-dir", "/fsx/a;touch /tmp/x"], "--output-dir '/fsx/a;touch /tmp/x'"),
    (["--output-dir", "/fsx/a,/etc"], "--output-dir '/fsx/a,/etc'"),
    (["--output-dir", "/fsx/a:/etc"], "--output-dir '/fsx/a:/etc'"),
    (["--nodelist", "-V"], "--nodelist: node list '-V'"),
    # attack-1 (2026-12-07): '/' was mounted as --container-mounts=/:/, /etc likewise
    (["--output-dir", "/"], "--output-dir '/': at or under /,"),
    (["--output-dir", "/etc"], "--output-dir '/etc': at or under /etc,"),
    (["--output-dir", "/./opt/amazon"], "at or under /opt,"),
])
def test_incident_values_from_the_audit_are_refused(args, message):
    """The cases issue #24 reported, each one line and exit 2 (they were accepted before)."""
    base = {"--instance-type": "p5", "--nodes": "2", "--container": "none"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    result = invoke("slurm", *[w for kv in base.items() for w in kv])
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1


RESERVED = load_table("launch")["reserved_output_dirs"]["paths"]


@pytest.mark.parametrize("launcher", ["slurm", "eks"])
def test_no_accepted_output_dir_mounts_over_a_system_tree(launcher):
    """Whatever path is given, an accepted --output-dir never is, nor lies under, a
    reserved top-level directory: the job bind-mounts it at the same path."""
    segment = st.sampled_from(["etc", "opt", "usr", "fsx", ".", "a", "home", "proc", "tmp"])

    @SETTINGS
    @given(parts=st.lists(segment, max_size=4), slash=st.booleans())
    def prop(parts, slash):
        path = "/" + "/".join(parts) + ("/" if slash else "")
        args = ["--instance-type", "p5", "--nodes", "2", "--output-dir", path]
        extra = ["--container", "none"] if launcher == "slurm" else ["--image", DIGEST]
        result = invoke(launcher, *args, *extra)
        real = [p for p in parts if p != "."]
        top = "/" + real[0] if real else "/"
        if top in RESERVED:
            assert refused_in_one_line(result), (path, result.output)
        else:
            assert result.exit_code == 0, (path, result.output)

    prop()


def test_absurd_node_counts_are_refused_before_any_work():
    for value in ("0", "1000000000000", "²", "1_000"):
        result = invoke("slurm", "--instance-type", "p5", "--nodes", value, "--container", "none")
        assert refused_in_one_line(result), (value, result.output)
