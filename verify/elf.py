"""Read an ELF shared object's DT_NEEDED/RUNPATH and resolve them like the loader.

An unresolved dependency of the aws-ofi-nccl plugin is exactly what silently
drops NCCL to sockets (NCCL just skips a plugin it cannot dlopen).  Parsing
the dynamic section here, instead of running ldd, works on any directory tree
(an image's root seen from outside, hand-made test trees) without executing it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from verify import rootfs
from verify.boundary.files import ReadError, read_bytes

# The largest library static reads whole: libnccl.so.2 with every arch is ~400 MB,
# torch's CUDA libraries ~1.5 GB; past 2 GiB it is no library.
MAX_LIBRARY_BYTES = 2 << 30
DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 1, 5, 15, 29
DEFAULT_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                "/lib", "/usr/lib", "/usr/local/lib")


class ElfError(ValueError):
    """Not a readable 64-bit little-endian ELF file."""


@dataclass(frozen=True)
class Dynamic:
    needed: tuple[str, ...]
    runpath: tuple[str, ...]


def read_file(path: Path) -> bytes:
    """A library's bytes through the boundary's one reader: a regular file (links
    followed) of at most MAX_LIBRARY_BYTES, never a FIFO (open() would block) or a
    device (a link to /dev/zero grew to 6.6 GB in 15 s, attack-1 H-2/H-3): the image
    tree is the untrusted input of `efa-verify static`.  One ElfError line otherwise."""
    try:
        return read_bytes(path, MAX_LIBRARY_BYTES)
    except ReadError as exc:
        raise ElfError(str(exc)) from None


def read_dynamic(path: Path) -> Dynamic:
    data = read_file(path)
    if data[:6] != b"\x7fELF\x02\x01":
        raise ElfError(f"{path}: not a 64-bit little-endian ELF file")
    try:
        return _dynamic(data)
    except (struct.error, IndexError, ValueError):
        raise ElfError(f"{path}: malformed program headers or dynamic section") from None


def _dynamic(data: bytes) -> Dynamic:
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic = [], None
    for i in range(phnum):
        p_type, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            loads.append((vaddr, offset, filesz))
        elif p_type == 2:
            dynamic = (offset, filesz)
    if dynamic is None:
        return Dynamic((), ())
    entries = []
    for pos in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, pos)
        if tag == 0:
            break
        entries.append((tag, value))
    strtab_addr = next((v for t, v in entries if t == DT_STRTAB), None)
    if strtab_addr is None:
        return Dynamic((), ())
    strtab = next((off + strtab_addr - va for va, off, size in loads
                   if va <= strtab_addr < va + size), strtab_addr)

    def string(offset: int) -> str:
        end = data.index(b"\0", strtab + offset)
        return data[strtab + offset:end].decode("utf-8", "replace")

    needed = tuple(string(v) for t, v in entries if t == DT_NEEDED)
    paths = [string(v) for t, v in entries if t in (DT_RPATH, DT_RUNPATH)]
    runpath = tuple(p for item in paths for p in item.split(":") if p)
    return Dynamic(needed, runpath)


def search_dirs(root: Path, ld_library_path: list[str]) -> list[str]:
    """LD_LIBRARY_PATH, then ld.so.conf(.d) inside `root`, then the defaults."""
    dirs = list(ld_library_path)
    conf_dir = rootfs.inside(root, "/etc/ld.so.conf.d")
    names = sorted(p.name for p in conf_dir.glob("*.conf")) if conf_dir else []
    conf_files = [rootfs.inside(root, "/etc/ld.so.conf"),
                  *(rootfs.inside(root, f"/etc/ld.so.conf.d/{name}") for name in names)]
    for conf in conf_files:
        if conf is not None and conf.is_file():
            try:
                text = read_bytes(conf).decode("utf-8", "replace")
            except ReadError as exc:
                raise ElfError(str(exc)) from None
            for line in text.splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "include")):
                    dirs.append(line)
    return dirs + list(DEFAULT_DIRS)


def find_library(name: str, root: Path, dirs: list[str]) -> Path | None:
    for directory in dirs:
        candidate = rootfs.inside(root, f"{directory}/{name}")
        if candidate is not None and candidate.exists():
            return candidate
    return None


def unresolved(lib: Path, root: Path, dirs: list[str], depth: int = 6) -> dict[str, str]:
    """Libraries `lib` needs (transitively) that cannot be found: name -> who needs it."""
    missing: dict[str, str] = {}
    seen: set[str] = set()
    todo = [(lib, depth)]
    while todo:
        current, left = todo.pop()
        try:
            dyn = read_dynamic(current)
        except (ElfError, OSError):
            continue
        try:
            origin = "/" + str(current.parent.relative_to(root))
        except ValueError:
            origin = str(current.parent)
        runpath = [p.replace("$ORIGIN", origin) for p in dyn.runpath]
        for name in dyn.needed:
            if name in seen:
                continue
            seen.add(name)
            found = find_library(name, root, [*runpath, *dirs])
            if found is None:
                missing[name] = current.name
            elif left > 0:
                todo.append((found, left - 1))
    return missing


FATBIN_MAGIC = 0xBA55ED50
FATBIN_ELF, FATBIN_PTX = 2, 1


def section(path: Path, name: str) -> bytes | None:
    """The bytes of section `name` of a 64-bit little-endian ELF file, or None."""
    data = read_file(path)
    if data[:6] != b"\x7fELF\x02\x01":
        raise ElfError(f"{path}: not a 64-bit little-endian ELF file")
    try:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
                   for i in range(shnum)]
        names = headers[shstrndx][4] if shnum else 0
        for name_off, sh_type, _flags, _addr, offset, size in headers:
            end = data.index(b"\0", names + name_off)
            if data[names + name_off:end].decode("ascii", "replace") == name:
                return None if sh_type == 8 else data[offset:offset + size]  # 8: NOBITS
    except (struct.error, IndexError, ValueError):
        raise ElfError(f"{path}: malformed section headers") from None
    return None


def fatbin_archs(path: Path) -> dict[str, set[str]]:
    """GPU code a CUDA binary carries, from its `.nv_fatbin` section:
    {"sass": {"sm_80", ...}, "ptx": {"sm_90", ...}}.  Reading the fatbin headers
    needs no GPU and no CUDA tool, and works whether the payloads are compressed."""
    found: dict[str, set[str]] = {"sass": set(), "ptx": set()}
    blob = section(path, ".nv_fatbin")
    if not blob:
        return found
    pos = 0
    while pos + 16 <= len(blob):
        magic, _version, header_size, fat_size = struct.unpack_from("<IHHQ", blob, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # containers are 8-byte aligned, padding between them
            continue
        entry, end = pos + header_size, min(pos + header_size + fat_size, len(blob))
        while entry + 32 <= end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", blob, entry)
            arch, = struct.unpack_from("<I", blob, entry + 28)
            if kind in (FATBIN_ELF, FATBIN_PTX):
                found["sass" if kind == FATBIN_ELF else "ptx"].add(f"sm_{arch}")
            if entry_header == 0:
                break
            entry += entry_header + payload
        pos = max(end, pos + 8)
    return found
