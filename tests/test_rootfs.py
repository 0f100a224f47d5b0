"""verify/rootfs.py: an image path never resolves outside the image's root."""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verify.rootfs import inside

PARTS = st.sampled_from(["a", "b", "..", ".", "", "lib", "x.so"])
TARGETS = st.lists(PARTS, max_size=6).map("/".join)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(links=st.lists(st.tuples(st.sampled_from(["a", "b", "a/lib", "b/x.so", "lib"]),
                                st.booleans(), TARGETS), max_size=5),
       path=TARGETS)
def test_every_path_resolves_under_the_root_with_no_link_left(tmp_path_factory, links, path):
    base = tmp_path_factory.mktemp("t")
    root, outside = base / "root", base / "outside"
    for d in ("a", "b"):
        (root / d).mkdir(parents=True, exist_ok=True)
        (outside / d / "lib").mkdir(parents=True, exist_ok=True)
    for where, absolute, target in links:
        link = root / where
        if not os.path.lexists(link) and link.parent.is_dir() and not link.parent.is_symlink():
            link.symlink_to(("/" if absolute else "../../outside/") + target)
    found = inside(root, path)
    if found is not None:
        assert found == root or root in found.parents
        parts = found.relative_to(root).parts
        assert ".." not in parts
        assert not any((root.joinpath(*parts[:i + 1])).is_symlink() for i in range(len(parts)))


def test_absolute_links_and_dotdot_stay_in_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "opt").mkdir()
    (root / "usr/lib/l").symlink_to("/opt")
    (root / "loop").symlink_to("loop")
    assert inside(root, "/usr/lib/l/../..") == root
    assert inside(root, "/../../../usr/lib/l") == root / "opt"
    assert inside(root, "/loop") is None
    assert inside(root, "/" + "x" * 5000) is None
