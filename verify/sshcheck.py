"""`static`'s `ssh` check: MPI over ssh works on every runtime and no private key ships.

Why each condition (issue #26):

* sshd and ssh are present: mpi-operator workers, SageMaker hosts and the Slurm
  container fallback start ranks through them.
* No private key in the image: whoever can pull the image would hold the key
  every container of it authorizes, and under pyxis/enroot that sshd listens on
  the node's own address.  Keys come from the runtime (mpi-operator's Secret, a
  per-job pair on Slurm, a per-job key for SageMaker); host keys are made at start.
* The client options (no host-key prompt) live in /etc/ssh, where a Secret that
  mpi-operator mounts over /root/.ssh cannot hide them; a /root/.ssh/config is
  hidden by that mount ("Host key verification failed").
"""

from __future__ import annotations

import re
from pathlib import Path

from verify import rootfs
from verify.checks import Check

# Where client keys are looked for (a whole-filesystem scan would read the CUDA tree).
# Not /etc/ssh: its host keys are made by efakit-entrypoint when a container starts
# (static runs in one), and the build removes any the packages made.
KEY_DIRS = ("/root/.ssh", "/home/*/.ssh")
KEY_MARK = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
MAX_FILES = 200
_STRICT_NO = re.compile(r"^\s*StrictHostKeyChecking\s*=?\s*(no|accept-new)\b", re.I | re.M)
_INCLUDE = re.compile(r"^\s*Include\s+(\S+)", re.I | re.M)


def private_keys(root: Path) -> list[str]:
    """Image paths of regular files that hold a private key (read: first 4 KiB only)."""
    found = []
    dirs = [d for pattern in KEY_DIRS for d in sorted(root.glob(pattern.lstrip("/")))]
    files = [f for d in dirs if d.is_dir() and not d.is_symlink() for f in sorted(d.iterdir())]
    for path in files[:MAX_FILES]:
        if path.is_symlink() or not path.is_file():
            continue
        try:
            with path.open("rb") as handle:
                head = handle.read(4096)
        except OSError:
            continue
        if KEY_MARK.search(head):
            found.append("/" + str(path.relative_to(root)))
    return found


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def client_options(root: Path) -> str | None:
    """The system-wide file that turns off host-key prompts, or None."""
    main = rootfs.inside(root, "/etc/ssh/ssh_config")
    text = _text(main) if main else ""
    # each file resolved inside the root: an absolute link or `..` never reads the host's
    included = [rootfs.inside(root, f"/{p.relative_to(root)}") for pattern in _INCLUDE.findall(text)
                for p in sorted(root.glob(pattern.lstrip("/")))] if text else []
    for path in [*included, main]:
        if path is not None and _STRICT_NO.search(_text(path)):
            return "/" + str(path.relative_to(root))
    return None


def ssh_check(root: Path) -> Check:
    """Pass: sshd and ssh present, no private key baked, client options under /etc/ssh."""
    problems = [f"missing {p}" for p in ("/usr/sbin/sshd", "/usr/bin/ssh")
                if not ((found := rootfs.inside(root, p)) and found.exists())]
    keys = private_keys(root)
    if keys:
        problems.append("private key baked into the image: " + ", ".join(keys[:4])
                        + " (keys come from the runtime: mpi-operator's Secret, a per-job "
                          "key on Slurm and SageMaker)")
    options = client_options(root)
    if options is None:
        hidden = " (only in /root/.ssh/config, which a mounted Secret hides)" if \
            (user := rootfs.inside(root, "/root/.ssh/config")) and \
            _STRICT_NO.search(_text(user)) else ""
        problems.append("no StrictHostKeyChecking in /etc/ssh/ssh_config or an included "
                        f"ssh_config.d file{hidden}")
    if problems:
        return Check("ssh", "fail", True, "ssh for MPI: " + "; ".join(problems))
    return Check("ssh", "pass", True, f"ssh ready for MPI: sshd, client options in {options}, "
                 "no private key in the image (keys come from the runtime)")
