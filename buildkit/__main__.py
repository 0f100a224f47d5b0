"""`python -m buildkit`: the same CLI as `efakit`, for callers that know only the interpreter."""

from buildkit.cli import main

main(prog_name="efakit")
