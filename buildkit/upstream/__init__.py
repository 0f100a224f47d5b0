"""Upstream releases of the stack: what a spec pins against what its upstreams publish.

`efakit outdated` asks each upstream named in images/upstream.yaml (the package index,
GitHub, Docker Hub, AWS's installer release notes) for its newest release, compares it
with the spec's pin, and with --update-pins writes the newer versions into a copy of
the spec for a person to review.  The parts: `versions` (the one comparer), `table`
(the upstream table), `pins` (every pin of a spec, with its key path), `client` (HTTP
with bounded time), `sources` (one reader per kind of upstream), `report` (the
comparison, the table and the JSON) and `rewrite` (the reviewed copy).
"""
