"""`efakit gate`: verify an image, then (only when green) push it.

Checks from inside (`efa-verify static` run in the image, no GPU) and from
outside (labels, env, entrypoint, size) go through the verifier's policy, so
required checks, waivers and the verdict mean the same as everywhere else.
"""

from __future__ import annotations

import json
import re

from buildkit.engine import Engine
from buildkit.progress import Progress
from buildkit.spec import Spec
from verify.checks import Check, Evidence, unknown_names
from verify.components import components
from verify.envrules import lint_env
from verify.policy import Policy

VERSION_LABELS = ("torch", "cuda", *(row.label for row in components().values()))
CONTENT_TAG_RE = re.compile(r"-(ec2|sagemaker)-[0-9a-f]{12}$")
ENTRYPOINT = ["/usr/local/bin/efakit-entrypoint"]
COMMANDS = {"ec2": ["/bin/bash"], "sagemaker": ["train"]}


def inspect(engine: Engine, ref: str) -> dict:
    from verify.cliutil import CliError

    done = engine.run("image", "inspect", ref, check=False)
    if done.returncode != 0:
        raise CliError(f"image {ref} not found in the local Docker engine (build it with "
                       "`make image`, or pull it)")
    return json.loads(done.stdout)[0]


def _ev(ref: str, text: str) -> Evidence:
    return Evidence(f"docker image inspect {ref}", 0, None, text)


def label_checks(ref: str, info: dict) -> list[Check]:
    labels = info["Config"].get("Labels") or {}
    wanted = [f"dev.efakit.version.{n}" for n in VERSION_LABELS] + \
        ["org.opencontainers.image.revision", "org.opencontainers.image.created",
         "dev.efakit.variant", "dev.efakit.framework"]
    missing = [k for k in wanted if not labels.get(k)]
    shown = ", ".join(f"{n}={labels.get(f'dev.efakit.version.{n}')}" for n in VERSION_LABELS)
    return [Check("labels", "fail" if missing else "pass", True,
                  f"labels missing: {', '.join(missing)}" if missing
                  else f"every version labelled: {shown}", [_ev(ref, shown)])]


def env_checks(ref: str, info: dict, record: dict) -> list[Check]:
    """The image's ENV against the rules, for the versions its own record states."""
    env = dict(item.split("=", 1) for item in info["Config"].get("Env") or [])
    # start defaults are exported by the entrypoint: judge ENV as a container sees it
    findings = lint_env({**(record.get("start_defaults") or {}), **env}, record["versions"])
    baked = {k: v for k, v in record["env"].items() if env.get(k) != v}
    problems = [f.message() for f in findings] + \
        [f"{k}: image ENV {env.get(k)!r} differs from its record {v!r}" for k, v in baked.items()]
    evidence = [_ev(ref, f"{k}={v}") for k, v in env.items()
                if k.startswith(("NCCL_", "FI_"))][:6]
    return [Check("image_env", "fail" if problems else "pass", True,
                  "; ".join(problems) if problems else
                  "ENV matches the env rules and the image's env record", evidence)]


def entrypoint_checks(ref: str, info: dict, variant: str) -> list[Check]:
    have = (info["Config"].get("Entrypoint"), info["Config"].get("Cmd"))
    want = (ENTRYPOINT, COMMANDS.get(variant))
    ok = have == want
    return [Check("entrypoint", "pass" if ok else "fail", True,
                  f"entrypoint {have[0]} cmd {have[1]}" + ("" if ok else
                                                          f" (expected {want[0]} {want[1]} "
                                                          f"for the {variant} variant)"),
                  [_ev(ref, json.dumps({"Entrypoint": have[0], "Cmd": have[1]}))])]


def size_checks(ref: str, info: dict, budget_gb: float) -> list[Check]:
    size = info.get("Size", 0) / 1e9
    return [Check("size", "pass" if size <= budget_gb else "fail", True,
                  f"{size:.2f} GB against the spec's budget of {budget_gb:g} GB",
                  [_ev(ref, f"Size {info.get('Size')}")])]


def static_in_image(engine: Engine, ref: str) -> tuple[list[Check], dict]:
    """`efa-verify static --json` inside the image, through its entrypoint (start-time env)."""
    done = engine.run("run", "--rm", "--network", "none", "-e", "EFAKIT_IMDS=off", ref,
                      "efa-verify", "static", "--json", check=False, timeout=600)
    try:
        result = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [Check("static", "fail", True, f"efa-verify static did not run in the image "
                      f"(exit {done.returncode}): {last}")], {}
    # Inside, the default policy (nothing waived) applies; the gate's policy decides here.
    unknown = unknown_names(c["name"] for c in result["checks"])
    if unknown:  # an image whose verifier is newer or older than this gate's registry
        return [Check("static", "fail", True, "efa-verify static in the image reported "
                      f"check(s) this gate does not know: {', '.join(unknown)}")], result
    checks = [Check(c["name"], c["status"], c["required"], c["message"],
                    [Evidence(**e) for e in c["evidence"]]) for c in result["checks"]]
    return checks, result


def image_record(engine: Engine, ref: str) -> dict:
    done = engine.run("run", "--rm", "--network", "none", "--entrypoint", "cat", ref,
                      "/etc/efakit/image-env.json", check=False)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"versions": {}, "env": {}}


def tags_of(info: dict) -> tuple[str | None, list[str]]:
    """(content tag, alias tags) among the image's local tags."""
    tags = [t.rsplit(":", 1)[1] for t in info.get("RepoTags") or []]
    content = [t for t in tags if CONTENT_TAG_RE.search(t)]
    return (content[0] if content else None), [t for t in tags if t not in content]


def gate_checks(engine: Engine, ref: str, info: dict, spec: Spec) -> tuple[list[Check], dict]:
    variant = (info["Config"].get("Labels") or {}).get("dev.efakit.variant", "?")
    progress = Progress("gate")
    progress.note(f"running efa-verify static inside {ref} (no network)")
    inner, static = static_in_image(engine, ref)
    progress.note("checking labels, ENV, entrypoint and size from docker image inspect")
    record = image_record(engine, ref)
    checks = inner + label_checks(ref, info) + env_checks(ref, info, record) + \
        entrypoint_checks(ref, info, variant) + size_checks(ref, info, spec.size_budget_GB)
    return checks, static


def push_refusal(verdict: str) -> str | None:
    """Why the gate keeps the image local; None only for PASS.  Fail, inconclusive (a
    check that could not run proves nothing) and any verdict this code does not know
    never push: a registry is where images are trusted."""
    return None if verdict == "pass" else f"gate verdict {verdict}: nothing was pushed"


def scan_check(scan: dict, policy: Policy) -> Check:
    counts = scan.get("counts", {})
    shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no findings"
    evidence = [Evidence("ecr:DescribeImageScanFindings", 0, None,
                         f"{f['severity']} {f['name']}") for f in scan.get("findings", [])][:6]
    if scan.get("status") != "COMPLETE":
        return Check("scan_findings", "unknown", True, f"ECR scan {scan.get('status')}: "
                     f"{scan.get('description', '')}", evidence)
    bad = {k: v for k, v in counts.items() if k in policy.scan_fail_on and v}
    return Check("scan_findings", "fail" if bad else "pass", True,
                 f"{shown} (the policy fails on {', '.join(policy.scan_fail_on)})", evidence)


def with_push(result: dict) -> dict:
    """The result after a push: `image.digest` is the registry reference the push made
    (or found already there), so gate.json, gate.md and the headline say what was
    pushed; before, they said 'not pushed' next to the log line that printed it."""
    push = result.get("push") or {}
    if push.get("action") in ("pushed", "already-present") and push.get("digest"):
        result["image"]["digest"] = f"{push['reference']}@{push['digest']}"
    return result


STATIC_DIFFERS = ("`efa-verify static` alone applies the default policy (every check required, "
                  "nothing waived); the gate applies the policy above, so the two can differ.")


def headline(result: dict) -> list[str]:
    """What was gated, under which policy, and a pass that rests on waivers said up front."""
    image = result["image"]
    waived = [c["name"] for c in result["checks"] if c["status"] == "waived"]
    verdict = result["verdict"].upper()
    if waived and result["verdict"] == "pass":
        verdict = f"PASS with {len(waived)} waiver{'s' * (len(waived) > 1)} ({', '.join(waived)})"
    push = result.get("push") or {}
    digest = image.get("digest") or ("no registry digest (not pushed: "
                                      f"{push['reason']})" if push.get("action") == "refused"
                                      else "no registry digest (not pushed)")
    return [f"GATE: {verdict}",
            f"image:  {image['reference']}  {digest}  (id {image['id']})",
            f"policy: {image['policy']}",
            f"note:   {STATIC_DIFFERS}"]
