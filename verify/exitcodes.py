"""The one exit-status table shared by `efakit` and `efa-verify`.

The README's table is checked against this enum by the tests, so the two never
drift: scripts and CI gates branch on these numbers.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    PASS = 0  # success, or verification passed
    FAIL = 1  # verification failed
    USAGE = 2  # usage or input error
    INCONCLUSIVE = 3  # the evidence cannot decide
    NO_ENGINE = 4  # a needed tool or engine is missing (docker, hadolint)
    NO_CREDENTIALS = 5  # AWS credentials or region missing or refused
    PUSH_REFUSED = 6  # the registry refused a push (e.g. an immutable tag)
    INTERRUPTED = 130  # stopped by SIGINT/SIGTERM (report still written)


DESCRIPTIONS = {
    Exit.PASS: "pass / success",
    Exit.FAIL: "verification failed",
    Exit.USAGE: "usage or input error",
    Exit.INCONCLUSIVE: "inconclusive: the evidence cannot decide",
    Exit.NO_ENGINE: "a needed tool or engine is missing (Docker, hadolint)",
    Exit.NO_CREDENTIALS: "AWS credentials or region missing or refused",
    Exit.PUSH_REFUSED: "the registry refused a push",
    Exit.INTERRUPTED: "interrupted (SIGINT/SIGTERM); partial report written",
}
