"""Which net plugin file NCCL opens, by NCCL's own rules (NVIDIA/nccl v2.29.7-1).

src/plugin/net.cc initPluginLibsOnceFunc: NCCL_NET_PLUGIN unset -> "libnccl-net.so";
set to "none" (any case) or to an empty value -> no external plugin; otherwise a
comma-separated list, tried in order.  src/plugin/plugin_open.cc openPluginLib: each
name is first dlopen()ed as given (a path when it holds '/', else searched like any
library); then, when it has no '/' and is not already `lib*.so`, as
`libnccl-net-<name>.so`.  So `libnccl-net-ofi.so` alone is opened only with
NCCL_NET_PLUGIN=ofi (or its full name), never by default.
"""

from __future__ import annotations

from pathlib import Path

from verify import elf, rootfs

PREFIX = "libnccl-net"
DEFAULT = f"{PREFIX}.so"


def entries(value: str | None) -> list[list[str]]:
    """For each plugin NCCL will try, the file names it dlopens, in order."""
    if value is None:
        return [[DEFAULT]]
    if value.lower() == "none":
        return []
    out = []
    for name in (n for n in value.split(",") if n):
        names = [name]
        full_name = name.startswith("lib") and len(name) >= 3 and name.endswith(".so")
        if "/" not in name and not full_name:
            names.append(f"{PREFIX}-{name}.so")
        out.append(names)
    return out


def resolve(value: str | None, root: Path, dirs: list[str]) -> tuple[Path | None, list[str]]:
    """The file NCCL would open first, and every name it would try (for the message)."""
    tried: list[str] = []
    for names in entries(value):
        for name in names:
            tried.append(name)
            if "/" in name:
                found = rootfs.inside(root, name) if name.startswith("/") else None
                if found is not None and found.exists():
                    return found, tried
                continue
            found = elf.find_library(name, root, dirs)
            if found is not None:
                return found, tried
    return None, tried
