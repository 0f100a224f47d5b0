"""Readiness before a multi-node start: every host answers, within a bounded deadline.

A fixed `sleep 20` raced the image import under pyxis (minutes for a large image)
and hid which node never came up.  Here each host is asked through the same
remote shell MPI will use (`ssh ... -- HOST true`, so the key and the host-key
options are proven too) until it answers or the deadline passes; the error then
names the hosts that are not ready.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from verify.run.hosts import is_local
from verify.run.supervise import rsh_command

# One probe's own limit: a host that accepts the connection but never answers.
PROBE_TIMEOUT_S = 15
MAX_PARALLEL = 64


def ssh_answers(host: str) -> bool:
    """Does `host` run a command through the remote shell MPI uses?"""
    rsh = rsh_command()
    operands = ["--", host] if os.path.basename(rsh[0]) == "ssh" else [host]
    try:
        done = subprocess.run([*rsh, *operands, "true"], capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def not_ready(hosts: Sequence[str], deadline_s: float,
              probe: Callable[[str], bool] = ssh_answers, pause: float = 2.0) -> list[str]:
    """The hosts (this one excepted) that did not answer `probe` within `deadline_s`."""
    waiting = [h for h in hosts if not is_local(h)]
    end = time.monotonic() + deadline_s
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL, len(waiting)))) as pool:
        while waiting:
            answers = dict(zip(waiting, pool.map(probe, waiting), strict=True))
            waiting = [h for h in waiting if not answers[h]]
            if not waiting or time.monotonic() + pause >= end:
                break
            time.sleep(pause)
    return waiting
