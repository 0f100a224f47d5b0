"""`make gpu-proof`: one call on a machine with NVIDIA GPUs and no network proves the
verifier on real hardware, in under 8 minutes.

Steps, each with its own time limit (the sum stays under BUDGET_S):
  1. efa-verify preflight (GPUs, driver, EFA devices as this host has them);
  2. nccl-tests: /opt/nccl-tests (the CI image's build), PATH, or all_reduce_perf
     built here from the source mirror (shared/artifacts/sources) for this GPU's arch;
  3. bare all_reduce_perf on every GPU of this host, timed (run.yaml's quick sweep);
  4. efa-verify run on this host with every GPU, timed, its NCCL log kept in
     OUT/fixture/ for tests/fixtures (the first real GPU log of this project);
  5. the verifier's overhead: step 4's wall time against step 3's.

`--dry-run` resolves and prints the plan (argv, limits, where nccl-tests comes from)
without running anything GPU-bound, so a CPU machine checks the plan and the first
GPU that becomes available costs one call.  The proof exits 0 when every step ran,
whatever the verdict (a host without EFA fails efa_devices, as it should), and 4
when a needed part (GPU, nccl-tests or a way to build it) is missing.

    python bench/gpu_proof.py --out out/gpu-proof [--dry-run] [--tests-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BUDGET_S = 480
# Per-step limits in seconds: their sum is the promise (tests check it).
LIMITS = {"preflight": 30, "build": 200, "bare": 90, "run": 150}
MIRRORS = (ROOT / "shared" / "artifacts" / "sources", ROOT.parent / "shared" / "artifacts" /
           "sources")


def gpu_count() -> tuple[int, str]:
    """GPUs NVML sees here, and the compute capability of the first ('' without one)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0, ""
    done = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30, check=False)
    caps = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return (len(caps), caps[0]) if done.returncode == 0 else (0, "")


def quick_sweep() -> list[str]:
    """run.yaml's quick sweep, so the bare run and `efa-verify run` measure the same sizes."""
    sys.path.insert(0, str(ROOT))
    from verify.tables import load_table

    return [str(a) for a in load_table("run")["sweeps"]["quick"]]


def nccl_home() -> Path | None:
    """NCCL headers and library: NCCL_HOME, else the nvidia-nccl wheel in this venv."""
    if os.environ.get("NCCL_HOME"):
        return Path(os.environ["NCCL_HOME"])
    try:
        import nvidia.nccl  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(list(nvidia.nccl.__path__)[0])


def find_tests(tests_dir: str | None, cap: str, out: Path) -> dict:
    """Where all_reduce_perf comes from: an existing build, or a build from the mirror."""
    for where in ([Path(tests_dir)] if tests_dir else []) + [Path("/opt/nccl-tests")]:
        if (where / "all_reduce_perf").is_file():
            return {"from": "existing", "dir": str(where)}
    on_path = shutil.which("all_reduce_perf")
    if on_path:
        return {"from": "PATH", "dir": str(Path(on_path).parent)}
    archives = sorted(a for m in MIRRORS if m.is_dir() for a in m.glob("nccl-tests-*.tar.gz"))
    nvcc = shutil.which("nvcc") or next((str(p) for p in [Path("/usr/local/cuda/bin/nvcc")]
                                         if p.is_file()), None)
    home = nccl_home()
    missing = [what for what, have in (("the source mirror (shared/artifacts/sources)",
                                        archives), ("nvcc", nvcc), ("NCCL headers (NCCL_HOME "
                                        "or the nvidia-nccl wheel)", home)) if not have]
    if missing:
        return {"from": None, "why": "no nccl-tests here and cannot build it: no "
                + ", no ".join(missing)}
    arch = cap.replace(".", "") or "90"
    src = out / "nccl-tests-src"
    return {"from": "mirror", "archive": str(archives[-1]), "dir": str(src / "build"),
            "argv": ["make", "-C", str(src), "MPI=0", f"CUDA_HOME={Path(nvcc).parents[1]}",
                     f"NCCL_HOME={home}", "BIN_FILES_LIST=all_reduce_perf",
                     f"NVCC_GENCODE=-gencode=arch=compute_{arch},code=sm_{arch}",
                     f"-j{os.cpu_count() or 4}"]}


def plan(out: Path, tests_dir: str | None) -> dict:
    gpus, cap = gpu_count()
    tests = find_tests(tests_dir, cap, out)
    sweep = quick_sweep()
    sweep[sweep.index("-g") + 1] = str(max(gpus, 1))  # one process drives every GPU
    verify = str(BIN / "efa-verify")
    bare = [str(Path(tests.get("dir") or "?") / "all_reduce_perf"), *sweep]
    steps = {
        "preflight": [verify, "preflight", "--json", "-o", str(out / "preflight.json")],
        "build": tests.get("argv"),
        "bare": bare,
        "run": [verify, "run", "--hosts", f"localhost:{max(gpus, 1)}", "--tests-dir",
                str(tests.get("dir") or "?"), "--output-dir", str(out / "run"), "--json",
                "-o", str(out / "run.json")],
    }
    return {"gpus": gpus, "compute_capability": cap or None, "nccl_tests": tests,
            "budget_s": BUDGET_S, "limits_s": LIMITS,
            "steps": {name: argv for name, argv in steps.items() if argv}}


def timed(argv: list[str], limit: int, log: Path) -> dict:
    start = time.monotonic()
    with log.open("w") as sink:
        try:
            code = subprocess.run(argv, stdout=sink, stderr=subprocess.STDOUT,
                                  timeout=limit, check=False).returncode
        except subprocess.TimeoutExpired:
            code = 124
        except OSError as exc:
            sink.write(f"{exc}\n")
            code = 127
    return {"argv": argv, "exit": code, "wall_s": round(time.monotonic() - start, 2),
            "log": str(log)}


def run(proof: dict, out: Path) -> dict:
    done: dict[str, dict] = {}
    tests = proof["nccl_tests"]
    for name, argv in proof["steps"].items():
        if name == "build":
            with tarfile.open(tests["archive"]) as tar:
                tar.extractall(out, filter="data")
            top = next(out.glob("nccl-tests-*/"))
            top.rename(out / "nccl-tests-src")
        done[name] = timed(argv, LIMITS[name], out / f"{name}.log")
    rank_logs = sorted((out / "run" / "logs").glob("rank.*.log"))
    fixture = out / "fixture"
    fixture.mkdir(exist_ok=True)
    for log in rank_logs[:8]:
        shutil.copy2(log, fixture / log.name)
    if done.get("bare", {}).get("exit") == 0 and "run" in done:
        done["overhead_s"] = round(done["run"]["wall_s"] - done["bare"]["wall_s"], 2)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "gpu-proof")
    parser.add_argument("--tests-dir", default=None)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    proof = plan(args.out.resolve(), args.tests_dir)
    print(json.dumps(proof, indent=2))
    if args.dry_run:
        (args.out / "plan.json").write_text(json.dumps(proof, indent=2) + "\n")
        return 0
    if not proof["gpus"] or not proof["nccl_tests"]["from"]:
        why = proof["nccl_tests"].get("why") or "no NVIDIA GPU visible (nvidia-smi)"
        print(f"gpu-proof: {why if proof['gpus'] else 'no NVIDIA GPU visible (nvidia-smi)'}",
              file=sys.stderr)
        return 4
    result = {**proof, "done": run(proof, args.out.resolve())}
    (args.out / "gpu-proof.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["done"], indent=2))
    return 0 if all(step.get("exit") != 127 for step in result["done"].values()
                    if isinstance(step, dict)) else 4


if __name__ == "__main__":
    sys.exit(main())
