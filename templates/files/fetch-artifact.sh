#!/bin/sh
# efakit-fetch-artifact NAME URL PIN DEST
# Take NAME from the artifact mirror (/artifacts, bind-mounted from the build
# context) or download URL, then check its pin before anything uses it.
# PIN is the publisher's digest of the file (`sha256:HEX`, `sha512:HEX`, or a
# bare 64-hex sha256), or `tree:HEX`, the git content tree id of a source
# archive (the same for GitHub's tag archive and a mirror's `git archive`);
# UNPINNED (refused unless EFAKIT_ALLOW_UNPINNED=1); or SIGNATURE/SIGNING-KEY
# (checked by efakit-verify-signature instead).
set -eu
name=$1 url=$2 want=$3 dest=$4
if [ -s /run/secrets/ca-bundle ]; then
    export CURL_CA_BUNDLE=/run/secrets/ca-bundle  # a TLS proxy's CA, as a BuildKit secret
fi
if [ -f "/artifacts/$name" ]; then
    cp "/artifacts/$name" "$dest"
else
    if ! command -v curl >/dev/null 2>&1; then
        echo "efakit: artifact $name: not in the mirror, and curl is missing to download $url" >&2
        exit 1
    fi
    if ! curl -fsSL --retry 3 -o "$dest" "$url"; then
        echo "efakit: artifact $name: download failed: $url (no mirror copy at /artifacts/$name)" >&2
        exit 1
    fi
fi
# The content tree id of an archive: git's address of every file and mode in its top folder.
tree_of() {
    work=$(mktemp -d)
    tar -xzf "$1" -C "$work" --strip-components=1
    (cd "$work" && git init -q && git add -A -f && git write-tree)
    rm -rf "$work"
}
case "$want" in
    SIGNATURE|SIGNING-KEY) exit 0 ;;
    UNPINNED)
        have=$(sha256sum "$dest" | cut -d' ' -f1)
        if [ "${EFAKIT_ALLOW_UNPINNED:-0}" = 1 ]; then
            echo "efakit: WARNING: artifact $name is unpinned; actual sha256 $have" >&2
            exit 0
        fi
        echo "efakit: artifact $name has no pinned sha256 (actual $have); pin it in the spec or build with --allow-unpinned" >&2
        rm -f "$dest"
        exit 1 ;;
    sha512:*) kind=sha512 want=${want#sha512:} have=$(sha512sum "$dest" | cut -d' ' -f1) ;;
    tree:*)
        kind=tree want=${want#tree:}
        if ! have=$(tree_of "$dest" 2>/dev/null); then have="unreadable (not a gzipped tar)"; fi ;;
    *) kind=sha256 want=${want#sha256:} have=$(sha256sum "$dest" | cut -d' ' -f1) ;;
esac
if [ "$have" != "$want" ]; then
    echo "efakit: artifact $name: $kind mismatch: expected $want, actual $have" >&2
    rm -f "$dest"
    exit 1
fi
echo "efakit: artifact $name: $kind ok ($have)"
