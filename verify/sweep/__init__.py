"""`efa-verify sweep`'s parts: the decision logic (logic.py), the real runner over
`efa-verify run` (runner.py), the simulated fabric (sim.py), the report (report.py)
and the command line (cli.py)."""
