"""`efa-verify run`'s parts: the job (job.py), its supervisor (supervise.py), which hosts
it spans (hosts.py, nodelist.py), and the EFA counters it reads (counters.py, judged
with outliers.py)."""
