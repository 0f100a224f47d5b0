#!/bin/sh
# efakit-verify-signature FILE SIG KEY FINGERPRINT
# Import KEY into a throw-away keyring, require its fingerprint to be the pinned
# one, then require SIG to be a good signature of FILE by that key.
set -eu
file=$1 sig=$2 key=$3 want=$4
GNUPGHOME=$(mktemp -d)
export GNUPGHOME
trap 'gpgconf --kill gpg-agent 2>/dev/null; rm -rf "$GNUPGHOME"' EXIT
gpg --batch --quiet --import "$key" 2>/dev/null
have=$(gpg --batch --with-colons --fingerprint | awk -F: '/^fpr/ {print $10; exit}')
if [ "$want" = UNPINNED ]; then
    if [ "${EFAKIT_ALLOW_UNPINNED:-0}" != 1 ]; then
        echo "efakit: signing key for $(basename "$file") has no pinned fingerprint (actual $have); pin it or build with --allow-unpinned" >&2
        exit 1
    fi
    echo "efakit: WARNING: signing key fingerprint unpinned; actual $have" >&2
elif [ "$have" != "$want" ]; then
    echo "efakit: signing key fingerprint mismatch for $(basename "$file"): expected $want, actual $have" >&2
    exit 1
fi
if ! gpg --batch --quiet --verify "$sig" "$file" 2>/dev/null; then
    echo "efakit: bad GPG signature on $(basename "$file") (key $have)" >&2
    exit 1
fi
echo "efakit: $(basename "$file"): good signature by $have"
