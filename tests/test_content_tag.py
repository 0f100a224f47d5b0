"""The content tag: the readable stack plus a hash of everything that makes the image.

A tag that stayed the same while its inputs changed would make the registry lie
(the gate and ECR trust the tag), so every input must move it: the base image,
the rendered context, the source archives, the pinned wheel list.  Without
Docker: the tag is computed from a rendered context and the base image's id.
"""

import shutil

import pytest

from buildkit.build import content_tag
from buildkit.render import render_context
from buildkit.spec import load_spec
from tests.conftest import ROOT

OFFLINE = load_spec(ROOT / "images" / "pytorch.yaml", profile="offline")
BASE = "sha256:" + "1" * 64


@pytest.fixture
def context(tmp_path):
    """A rendered ec2 context with an artifacts folder as a build fills it."""
    ctx = render_context(OFFLINE, "ec2", tmp_path / "context")
    artifacts = ctx / "artifacts"
    (artifacts / "wheels").mkdir(parents=True, exist_ok=True)
    (artifacts / "libfabric-2.6.0.tar.gz").write_bytes(b"source archive")
    (artifacts / "wheels" / "torch-2.13.0-cp311-none-linux_x86_64.whl").write_bytes(b"wheel")
    (artifacts / "wheels" / "requirements-base.txt").write_text("torch==2.13.0 --hash=sha256:aa\n")
    return ctx


def tag(ctx, base=BASE, variant="ec2"):
    return content_tag(OFFLINE, variant, ctx, base)


def test_the_same_inputs_give_the_same_tag(context, tmp_path):
    first = tag(context)
    assert first.startswith("pytorch2.13-cuda") and "-ec2-" in first
    assert tag(shutil.copytree(context, tmp_path / "again")) == first


def test_another_base_image_changes_the_tag(context):
    assert tag(context, "sha256:" + "2" * 64) != tag(context)


def test_another_variant_changes_the_readable_part(context):
    assert "-sagemaker-" in tag(context, variant="sagemaker")
    assert tag(context, variant="sagemaker") != tag(context)


@pytest.mark.parametrize("rel", ["Dockerfile", "artifacts/libfabric-2.6.0.tar.gz",
                                 "artifacts/wheels/requirements-base.txt"])
def test_a_changed_input_changes_the_tag(context, rel):
    before = tag(context)
    with (context / rel).open("ab") as handle:
        handle.write(b"\n# one more byte\n")
    assert tag(context) != before


def test_a_wheel_counts_through_its_pinned_hash_not_its_bytes(context):
    """Wheels are pinned by the hashes in the requirements files (which the tag covers);
    their bytes are left out so hard-linked mirrors hash fast."""
    before = tag(context)
    (context / "artifacts" / "wheels" / "torch-2.13.0-cp311-none-linux_x86_64.whl").write_bytes(
        b"another wheel")
    assert tag(context) == before
