#!/bin/sh
# efakit-strip DIR...: make an installed tree fit for the final image: strip
# every ELF file, drop static and libtool archives and man pages.
set -eu
for dir in "$@"; do
    find "$dir" \( -name '*.a' -o -name '*.la' \) -type f -delete
    rm -rf "$dir/share/man"
    find "$dir" -type f | while read -r file; do
        if [ "$(od -An -tx1 -N4 "$file" | tr -d ' ')" = 7f454c46 ]; then
            strip --strip-unneeded "$file"
        fi
    done
done
