#!/bin/sh
# efakit-fetch-artifact NAME URL SHA256 DEST
# Take NAME from the artifact mirror (/artifacts, bind-mounted from the build
# context) or download URL, then check its sha256 before anything uses it.
# SHA256 may be UNPINNED (refused unless EFAKIT_ALLOW_UNPINNED=1) or
# SIGNATURE/SIGNING-KEY (checked by efakit-verify-signature instead).
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
have=$(sha256sum "$dest" | cut -d' ' -f1)
case "$want" in
    SIGNATURE|SIGNING-KEY) exit 0 ;;
    UNPINNED)
        if [ "${EFAKIT_ALLOW_UNPINNED:-0}" = 1 ]; then
            echo "efakit: WARNING: artifact $name is unpinned; actual sha256 $have" >&2
            exit 0
        fi
        echo "efakit: artifact $name has no pinned sha256 (actual $have); pin it in the spec or build with --allow-unpinned" >&2
        rm -f "$dest"
        exit 1 ;;
esac
if [ "$have" != "$want" ]; then
    echo "efakit: artifact $name: sha256 mismatch: expected $want, actual $have" >&2
    rm -f "$dest"
    exit 1
fi
echo "efakit: artifact $name: sha256 ok ($have)"
