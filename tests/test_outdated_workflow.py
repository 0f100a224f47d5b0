"""The weekly `outdated` workflow: its triggers and its one writable job, and its pull
request step run for real against a local bare repository with a recording `gh`.
(Pinning, env-only values, persist-credentials and zizmor are checked for every
workflow in tests/test_workflow_security.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "outdated.yml"
DOC = yaml.safe_load(WORKFLOW.read_text())
JOB = DOC["jobs"]["outdated"]
PR_STEP = JOB["steps"][-1]


def test_weekly_and_by_hand_only_with_the_default_token_writable_in_one_job():
    triggers = DOC[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    assert DOC["permissions"] == {}
    assert JOB["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "secrets." not in WORKFLOW.read_text()
    assert [s.get("run") for s in JOB["steps"] if s.get("run", "").startswith("make")] \
        == ["make outdated"]


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A clone of a bare `origin` holding images/pytorch.yaml, and a recording `gh`."""
    origin, work, bin_dir = tmp_path / "origin.git", tmp_path / "work", tmp_path / "bin"
    _git("init", "--quiet", "--bare", "--initial-branch=main", str(origin), cwd=tmp_path)
    _git("init", "--quiet", "--initial-branch=main", str(work), cwd=tmp_path)
    (work / "images").mkdir()
    shutil.copyfile(ROOT / "images" / "pytorch.yaml", work / "images" / "pytorch.yaml")
    (work / "out" / "outdated").mkdir(parents=True)
    (work / "out" / "outdated" / "outdated.txt").write_text("PIN  PINNED  NEWEST\n")
    for args in (["add", "images"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit",
                                     "--quiet", "-m", "spec"],
                 ["remote", "add", "origin", str(origin)], ["push", "--quiet", "origin", "main"]):
        _git(*args, cwd=work)
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text('#!/bin/sh\necho "$*" >> "$GH_LOG"\n'
                  'case "$1 $2" in "pr view") exit 1;; esac\n')
    gh.chmod(0o755)
    return origin, work, bin_dir


def _run_pr_step(work: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(work.parent),
           "GH_LOG": str(work.parent / "gh.log"), "GIT_CONFIG_NOSYSTEM": "1"}
    for name, value in PR_STEP["env"].items():
        env[name] = {"GH_TOKEN": "not-a-token", "BASE": "main"}.get(name, str(value))
    return subprocess.run(["bash", "-c", PR_STEP["run"]], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_changed_copy_becomes_a_branch_and_a_pull_request_never_main(repo):
    origin, work, bin_dir = repo
    spec = (work / "images" / "pytorch.yaml").read_text()
    (work / "out" / "outdated" / "pytorch.yaml").write_text(spec + "# moved\n")
    main_before = _git("rev-parse", "main", cwd=origin)
    proc = _run_pr_step(work, bin_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _git("rev-parse", "main", cwd=origin) == main_before
    changed = _git("diff", "--name-only", "main", "efakit-outdated", cwd=origin).split()
    assert changed == ["images/pytorch.yaml"]
    calls = (work.parent / "gh.log").read_text().splitlines()
    assert calls[0] == "auth setup-git"
    assert calls[-1].startswith("pr create --base main --head efakit-outdated")
    body = (work / "out" / "outdated" / "pr-body.md").read_text()
    assert "PIN  PINNED  NEWEST" in body and "fetch-artifacts --update-pins" in body


def test_a_current_spec_opens_nothing(repo):
    origin, work, bin_dir = repo
    shutil.copyfile(work / "images" / "pytorch.yaml", work / "out" / "outdated" / "pytorch.yaml")
    proc = _run_pr_step(work, bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert "every pin is current" in proc.stdout
    assert not (work.parent / "gh.log").exists()
    assert "efakit-outdated" not in _git("branch", "--list", cwd=origin)
