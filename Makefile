# efakit make targets: the same commands locally and in CI (the GitHub workflow
# only calls these).  A virtual environment is created in .venv unless one is
# already active.
FRAMEWORK ?= pytorch
PROFILE ?=
OUT ?= out
# Build contexts, logs and last-build.json (the tests point this at a temporary folder).
BUILD_OUT ?= $(OUT)/build

ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := $(CURDIR)/.venv
endif
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.efakit-installed
# Tests and lint call efa-verify, efakit and hadolint by name: the venv's come first.
export PATH := $(BIN):$(PATH)
PROFILE_FLAG := $(if $(PROFILE),--profile $(PROFILE),)

VARIANT ?=
TAG ?=
# Images are tagged NAMESPACE/FRAMEWORK; the tests set efakit-test, never moving a user's tags.
NAMESPACE ?= $(or $(EFAKIT_NAMESPACE),efakit)
MIRROR ?= out/mirror
VARIANT_FLAG := $(if $(VARIANT),--variant $(VARIANT),)
TAG_FLAG := $(if $(TAG),--tag $(TAG),)

.PHONY: help venv render golden lint test test-deps mutate fuzz bench-parse bench-build clean \
	image ci-image host mirror base-image base-facts gate free-disk sagemaker-verify outdated \
	gpu-proof

# make gate [IMAGE=ref] [PUSH=ecr-uri] [POLICY=file] [REGISTRY=host:port]
IMAGE ?=
PUSH ?=
POLICY ?=
REGISTRY ?=

help:
	@echo "make ci-image [NAMESPACE=efakit]                build NAMESPACE/pytorch:ci and :ci-sagemaker offline"
	@echo "make image FRAMEWORK=pytorch [VARIANT=] [PROFILE=] [TAG=] [ALLOW_UNPINNED=1]  build with BuildKit"
	@echo "make render FRAMEWORK=pytorch [PROFILE=offline]  render every variant into $(OUT)/render"
	@echo "make gate [IMAGE=] [PUSH=ecr-uri] [POLICY=]     verify the last built image; push only when green"
	@echo "make base-facts [STAND_INS=1]                   compare images/base-facts.yaml with the real bases"
	@echo "make lint                                       ruff, hadolint, the env rules, the workflows (zizmor)"
	@echo "make test                                       the test suite (creates .venv if needed)"
	@echo "make test-deps                                  system packages the Docker-free tests need (Open MPI)"
	@echo "make mutate                                     mutation score of the suite (bench/mutations.yaml)"
	@echo "make fuzz                                       the promise properties with 2000 examples each"
	@echo "make golden                                     regenerate tests/golden after a deliberate change"
	@echo "make outdated [FRAMEWORK=pytorch]               each pin against its upstream; a copy with the newest pins in $(OUT)/outdated"
	@echo "make bench-parse                                parser throughput against grep"
	@echo "make gpu-proof [DRY_RUN=1] [TESTS_DIR=]         on a GPU machine, no network: preflight, nccl-tests, run, overhead (< 8 min)"

$(STAMP): pyproject.toml
	@echo "efakit: installing efakit[build,test] into $(VENV) with pip (a few quiet minutes the first time)" >&2
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[build,test]'
	@touch $@

venv: $(STAMP)

render: $(STAMP)
	$(BIN)/efakit render $(FRAMEWORK) $(PROFILE_FLAG) -o $(OUT)/render/$(FRAMEWORK)$(if $(PROFILE),-$(PROFILE),)

golden: $(STAMP)
	EFAKIT_UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/test_golden.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/efakit lint $(FRAMEWORK)
	$(BIN)/efakit lint $(FRAMEWORK) --profile offline
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/zizmor --offline --quiet .github/workflows

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

# System packages the Docker-free tests need beyond the venv: Open MPI's mpirun for
# the `efa-verify run` tests (in CI a missing part fails the test instead of skipping
# it).  Installs only what is missing, with apt (sudo unless root).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-deps:
	@command -v mpirun >/dev/null || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
		openmpi-bin; }
	@mpirun --version | head -1

# Mutation score of the Docker-free suite over the decisions users depend on
# (bench/mutations.yaml); a benchmark, not a CI step: it takes long.
# make mutate [MUTATE_ARGS="--only NAME --tests-from main"]
mutate: $(STAMP)
	$(PY) bench/mutate.py $(MUTATE_ARGS)

# The promise properties with many more generated inputs (tests/conftest.py: fuzz).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q -p no:cacheprovider tests/test_promises_*.py $(PYTEST_ARGS)

image: $(STAMP)
	$(BIN)/efakit build $(FRAMEWORK) $(VARIANT_FLAG) $(PROFILE_FLAG) $(TAG_FLAG) \
		$(if $(filter 1,$(ALLOW_UNPINNED)),--allow-unpinned,) --out $(BUILD_OUT) \
		--namespace $(NAMESPACE)

# The base facts (images/base-facts.yaml) against the real base images: registry-only
# commands in each base and builder (no GPU); fails with the difference.  STAND_INS=1
# probes the local stand-ins instead (tests/standins).
STAND_INS ?=
base-facts: $(STAMP)
	$(PY) -m buildkit.basefacts check --spec images/$(FRAMEWORK).yaml $(if $(STAND_INS),--stand-ins,)

gate: $(STAMP)
	$(BIN)/efakit gate $(IMAGE) $(if $(POLICY),--policy $(POLICY),) \
		$(if $(PUSH),--push $(PUSH),) $(if $(REGISTRY),--registry $(REGISTRY),) --out $(OUT)/gate \
		--build-out $(BUILD_OUT) \
		$(if $(GITHUB_STEP_SUMMARY),--summary $(GITHUB_STEP_SUMMARY),)

# make sagemaker-verify IMAGE=ecr-uri ROLE=arn S3=s3://bucket/prefix [COUNT=2] [SUBNETS=] [SGS=]
# The values are read by the shell, each one quoted argument, never expanded by make: the
# CI passes a dispatcher's text through the environment, and $(...) in it stays text.
sagemaker-verify: $(STAMP)
	$(BIN)/efakit sagemaker-verify --image-uri="$$IMAGE" --role="$$ROLE" --output="$$S3" \
		--instance-type=ml.p4d.24xlarge --instance-count="$${COUNT:-2}" \
		$${SUBNETS:+--subnets="$$SUBNETS" --security-groups="$$SGS"}

# Hosted GitHub runners ship ~30 GB of toolchains a GPU image build does not
# need.  Only on GitHub Actions: locally this target does nothing.
free-disk:
ifeq ($(GITHUB_ACTIONS),true)
	sudo rm -rf /usr/share/dotnet /usr/local/lib/android /opt/ghc /opt/hostedtoolcache/CodeQL
	docker system prune --all --force
	df -h /
else
	@echo "free-disk: not on GitHub Actions, nothing removed"
endif

# The offline profile, built for real without registry or GitHub/AWS access:
# a mirror of pinned wheels, a debootstrapped base, then both variants.
$(MIRROR)/wheels/requirements-base.txt: | $(STAMP)
	$(BIN)/efakit fetch-artifacts pytorch $(MIRROR) --profile offline

mirror: $(MIRROR)/wheels/requirements-base.txt

# Docker and debootstrap installed and dockerd started where missing (as root on
# Debian/Ubuntu), or the exact commands printed, before anything is downloaded.
host:
	@OUT=$(OUT) .ci/setup-host --pidfile $(OUT)/dockerd.pid

base-image: host mirror
	$(BIN)/efakit base-image --mirror $(MIRROR)

ci-image: host base-image
	$(BIN)/efakit build pytorch --profile offline --variant ec2 --tag ci --out $(BUILD_OUT) \
		--namespace $(NAMESPACE)
	$(BIN)/efakit build pytorch --profile offline --variant sagemaker --tag ci-sagemaker \
		--out $(BUILD_OUT) --namespace $(NAMESPACE)
	@OUT=$(OUT) .ci/setup-host --report $(OUT)/dockerd.pid

# Each pin of the spec against its upstream's newest release (images/upstream.yaml):
# the table in $(OUT)/outdated/outdated.txt and a copy of the spec with every behind
# pin moved, for review, in $(OUT)/outdated/$(FRAMEWORK).yaml (the spec itself is never
# written).  Behind (exit 1) is this target's normal answer; inconclusive (3) fails it.
outdated: $(STAMP)
	@mkdir -p $(OUT)/outdated
	@rc=0; $(BIN)/efakit outdated $(FRAMEWORK) --update-pins $(OUT)/outdated/$(FRAMEWORK).yaml \
		> $(OUT)/outdated/outdated.txt || rc=$$?; cat $(OUT)/outdated/outdated.txt; \
		test $$rc -le 1

bench-build: $(STAMP)
	$(PY) bench/build.py

bench-parse: $(STAMP)
	$(PY) bench/parse.py

# One call on a GPU machine (bench/gpu_proof.py): results and the NCCL log for
# tests/fixtures in $(OUT)/gpu-proof.  DRY_RUN=1 prints the plan only (any machine).
gpu-proof: $(STAMP)
	$(PY) bench/gpu_proof.py --out $(OUT)/gpu-proof $(if $(DRY_RUN),--dry-run,) \
		$(if $(TESTS_DIR),--tests-dir $(TESTS_DIR),)

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
