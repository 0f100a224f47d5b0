"""`python -m verify`: the same CLI as `efa-verify`, for launchers that know only Python."""

from verify.cli import main

main()
