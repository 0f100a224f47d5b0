"""What reaches standard output and standard error (issue #24, attack-1 SA-1, W-1).

* Data written to stdout is byte for byte what `-o FILE` writes: click.echo strips
  escape sequences when stdout is no terminal, so `> file` and `-o file` differed.
* An error line that quotes a user's value is printable and bounded: a 100 KB value
  comes back as a short excerpt, never a 100 KB line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from verify import startenv
from verify.boundary.values import MAX_MESSAGE_CHARS, excerpt, printable
from verify.envrules import safe_value

ENV = {**os.environ, "EFAKIT_IMDS": "off", "AWS_EC2_METADATA_DISABLED": "true"}
# Values with the bytes a terminal acts on: ESC sequences, CR, BEL, DEL, C1, non-ASCII.
values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                 max_size=30) | st.sampled_from(["\x1b[31mX", "a\rb", "\x07", "\x7f",
                                                 "\x9b2J", "é\x1b]0;t\x07"]) \
    | st.from_regex(r"[A-Za-z0-9_.,:/=+@%-]{0,20}", fullmatch=True)  # exportable values


@settings(max_examples=25, deadline=None)
@given(value=values)
def test_env_shell_on_a_pipe_is_exactly_the_planned_lines(tmp_path_factory, value):
    record = tmp_path_factory.mktemp("out") / "r.json"
    record.write_text(json.dumps({"versions": {}, "env": {},
                                  "start_defaults": {"NCCL_X_VALUE": value}}))
    proc = subprocess.run([sys.executable, "-m", "verify", "env", "--shell", "--image-env",
                           str(record), "--instance-type", "p5"], capture_output=True,
                          env={k: v for k, v in ENV.items() if k != "NCCL_X_VALUE"},
                          timeout=60, check=False)
    if not safe_value(value):  # attack-2 I-1: refused at load, one line, nothing out
        assert proc.returncode == 2 and proc.stdout == b"", proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    plan = startenv.plan(startenv.load_image_env(record), _p5(), {})
    want = "".join(f"{line}\n" for line in startenv.shell_lines(plan))
    assert proc.stdout == want.encode("utf-8")


def _p5():
    from verify.detect import Detection
    from verify.profiles import resolve

    return Detection(resolve("p5"), "test", "p5")


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=3000) | st.integers(0, 200_000).map(lambda n: "a" * n))
def test_an_error_excerpt_is_printable_and_bounded(text):
    out = excerpt(text)
    assert len(out) <= MAX_MESSAGE_CHARS + 40
    assert all(c.isprintable() or c == "\t" for c in out)
    if len(printable(text)) <= MAX_MESSAGE_CHARS:
        assert out == printable(text)


def test_attack_w1_a_100kb_value_is_a_short_error_line(tmp_path):
    """attack-1 W-1: `--instance-type` or `--partition` of 100 KB came back whole."""
    huge = "a" * 100_000
    log = tmp_path / "x.log"
    log.write_text("host1:1:1 [0] NCCL INFO NCCL version 2.21.5+cuda12.4\n")
    for argv in ([sys.executable, "-m", "verify", "parse", str(log), "--instance-type", huge],
                 [sys.executable, "-m", "buildkit", "launch", "slurm", "--instance-type", "p5",
                  "--nodes", "2", "--image", "a#b:1", "--partition", huge]):
        proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=60,
                              check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and len(proc.stderr) < 1000, len(proc.stderr)


@settings(max_examples=20, deadline=None)
@given(value=values)
def test_to_stdout_writes_the_bytes_as_given_on_a_pipe(value):
    """The one writer of data to stdout: what a pipe receives is the text, whole."""
    program = ("import sys; from verify.boundary.emit import to_stdout; "
               "print('before', flush=True); to_stdout(sys.argv[1]); print('after')")
    proc = subprocess.run([sys.executable, "-c", program, value], capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"before\n" + value.encode("utf-8") + b"after\n"


def test_attack_sa1_launch_to_stdout_equals_launch_to_a_file(tmp_path):
    """attack-1 SA-1: `--arg $'\\x1b[31mX'` reached the -o script but not the > script."""
    argv = [sys.executable, "-m", "buildkit", "launch", "slurm", "--instance-type", "p5",
            "--nodes", "2", "--container", "none", "--arg", "\x1b[31mX"]
    piped = subprocess.run(argv, capture_output=True, env=ENV, timeout=60, check=True)
    subprocess.run([*argv, "-o", str(tmp_path / "b.sh")], capture_output=True, env=ENV,
                   timeout=60, check=True)
    assert piped.stdout == (tmp_path / "b.sh").read_bytes()
