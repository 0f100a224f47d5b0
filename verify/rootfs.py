"""Paths of an image resolved inside its root, as the image's own loader sees them.

`efa-verify static --root DIR` reads an image unpacked on a host.  `DIR / path` is not
the image's file when a link on the way is absolute (`libfoo.so -> /usr/lib/...`, read
on the host) or the path climbs with `..` (NCCL_NET_PLUGIN=/../../tmp/x): a host file
was judged `PASS plugin` (attack-2 SA-2).  Here every component and every link hop is
resolved under the root, as chroot would: `..` stops at the root and an absolute link
target starts again from it.  The result holds no link, so reading it reads the image.
"""

from __future__ import annotations

from pathlib import Path

MAX_HOPS = 40  # links one lookup follows before the kernel says ELOOP


def inside(root: Path, path: str) -> Path | None:
    """`path` (absolute or not, as the image names it) resolved under `root`; None when
    no file can be reached by it (a link loop, a name too long, a NUL byte)."""
    todo = [part for part in reversed(path.split("/")) if part]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        here = root.joinpath(*done, part)
        try:
            target = here.readlink() if here.is_symlink() else None
        except (OSError, ValueError):  # ENAMETOOLONG, an embedded NUL
            return None
        if target is None:
            done.append(part)
            continue
        hops += 1
        if hops > MAX_HOPS:
            return None
        if target.is_absolute():
            done = []
        todo.extend(part for part in reversed(str(target).split("/")) if part)
    return root.joinpath(*done)
