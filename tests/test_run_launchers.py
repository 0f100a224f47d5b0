"""How ranks start (verify/run/job.py launch_base, verify/run/ready.py): srun steps placed in
our host order with labelled lines, and readiness that names the hosts not ready."""

from __future__ import annotations

import time
from pathlib import Path

from verify.run import job
from verify.run.hosts import Host, HostPlan
from verify.run.ready import not_ready
from verify.run.supervise import SRUN_LABEL_RE, TAG_RE, Demux


def opts(tmp_path: Path, launcher: str) -> job.RunOptions:
    plan = HostPlan((Host("n3"), Host("n1")), "--hosts")
    return job.RunOptions(plan, 2, "--gpus-per-host", tmp_path, launcher=launcher,
                          launcher_env={"TMPDIR": str(tmp_path)})


def test_srun_places_ranks_in_our_host_order_not_slurms(tmp_path):
    argv, env = job.launch_base(opts(tmp_path, "srun"), "/usr/bin/srun",
                                [("n3", 2), ("n1", 2)], {"NCCL_DEBUG": "INFO"}, "benchmark")
    assert argv[:5] == ["/usr/bin/srun", "--overlap", "--nodes=2", "--ntasks=4",
                        "--nodelist=n3,n1"]
    assert "--distribution=arbitrary" in argv and "--mpi=pmix" in argv and "--label" in argv
    assert Path(env["SLURM_HOSTFILE"]).read_text() == "n3\nn3\nn1\nn1\n"  # ranks 0,1 on n3
    assert env["SLURM_HOSTFILE"] == str(tmp_path / "srun-benchmark.hosts")  # not in logs/
    assert not any(a == "-x" for a in argv)  # srun exports the environment itself


def test_mpirun_keeps_its_forwarded_environment(tmp_path):
    argv, env = job.launch_base(opts(tmp_path, "mpirun"), "/usr/bin/mpirun",
                                [("n3", 2), ("n1", 2)], {"NCCL_DEBUG": "INFO"}, "benchmark")
    assert env == {} and argv[-3:] == ["-x", "NCCL_DEBUG", "--"] and "n3:2,n1:2" in argv


def test_srun_labels_and_mpirun_tags_split_into_rank_logs(tmp_path):
    for tags, lines in ((SRUN_LABEL_RE, [b" 1: hello\n", b"10: ten\n", b"srun: note\n"]),
                        (TAG_RE, [b"[1,1]<stdout>: hello\n", b"[1,10]<stderr>: ten\n",
                                  b"srun: note\n"])):
        demux = Demux(tmp_path / tags.pattern.decode()[:4].strip("^[ "), "", tags)
        demux.logs.mkdir()
        for line in lines:
            demux.feed(line)
        assert sorted(demux.ranks) == [1, 10]
        assert demux.ranks[1].tail[-1] == "hello" and demux.launcher.tail[-1] == "srun: note"


def test_not_ready_names_the_hosts_that_never_answered_within_the_deadline():
    asked: dict[str, int] = {}

    def probe(host: str) -> bool:
        asked[host] = asked.get(host, 0) + 1
        return host == "n1" or (host == "n2" and asked[host] >= 2)

    start = time.monotonic()
    assert not_ready(["n1", "n2", "n3"], 1.0, probe, pause=0.2) == ["n3"]
    assert time.monotonic() - start < 3  # bounded
    assert asked["n1"] == 1 and asked["n2"] == 2 and asked["n3"] >= 3
