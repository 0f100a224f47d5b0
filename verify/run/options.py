"""The options that say how `efa-verify run` and `sweep` start their ranks (one decorator,
so both commands take the same launcher, MPI plugin and readiness deadline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from verify.boundary.values import Finite, Matching

F = TypeVar("F", bound=Callable)
# A day: a readiness wait longer than that is a typo (the job's time limit bounds it too).
MAX_READY_S = 86400.0


def launcher_options(func: F) -> F:
    """--launcher, --srun-mpi, --ready-timeout."""
    from verify.run.job import LAUNCHERS, SRUN_MPI_RE

    options = [
        click.option("--launcher", type=click.Choice(LAUNCHERS), default="mpirun",
                     show_default=True,
                     help="mpirun over ssh, or srun steps inside a Slurm allocation "
                          "(no sshd needed)."),
        click.option("--srun-mpi", type=Matching(SRUN_MPI_RE, "TYPE", "pmix"), default="pmix",
                     show_default=True, help="srun --mpi= plugin (pmix, pmi2, none)."),
        click.option("--ready-timeout", type=Finite(0, MAX_READY_S), default=None,
                     metavar="SECONDS", help="mpirun: first wait until every host answers "
                     "over ssh; the error names the hosts that did not."),
    ]
    for option in reversed(options):
        func = option(func)
    return func
