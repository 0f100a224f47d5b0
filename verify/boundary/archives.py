"""Source archives, read as a stream: their git tree id, and the member checks.

Why a stream (issue #24): the pin check used to unpack an archive so that `git add`
could hash it, which wrote an untrusted archive to disk before anything trusted it; a
crafted archive got past the interpreter's tar filter and overwrote a file outside
both the mirror and the temporary folder, and a sparse 8 GB member in a 150-byte
archive stalled the check.  Here the tar stream is read once, in memory: every member
passes `checked_members` (regular files, directories and symlinks only, no absolute
or `..` names, links that stay inside, sizes refused by what the header declares,
before any data is read), each file and link becomes a git blob id, and the tree
objects are hashed from those.  Nothing is written anywhere, so this does not depend
on the interpreter's tar extraction filter.

The result is the tree `git add -A` gives for the archive's top folder.  `git add`
applies the archive's own `.gitattributes` to the end-of-line of text files (libfabric
2.6 marks `*.cmd eol=crlf`, so its tag archive holds CRLF that its tree does not); the
attributes that change what is checked in (`text`, `eol`, `crlf`, the `binary`
macro) are applied here as git does.  An archive whose attributes would need more
(`ident`, `working-tree-encoding`, macro definitions, quoted patterns, POSIX
character classes) is refused in one line rather than given a tree git might not.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import lzma
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from verify.boundary.values import shown

__all__ = ["ArchiveError", "checked_members", "extract", "tree_id", "MAX_MEMBER_BYTES",
           "MAX_MEMBERS", "MAX_STREAM_BYTES"]

# Bounds on what a source archive may hold.  The pinned sources are far below them:
# libfabric 2.6 is 2,176 members, 23 MB unpacked, its largest file 0.3 MB.
MAX_MEMBER_BYTES = 64 << 20  # one file: read into memory to hash it
MAX_STREAM_BYTES = 512 << 20  # the whole uncompressed tar stream, headers included
MAX_MEMBERS = 100_000
MAX_NAME_BYTES = 4096  # PATH_MAX: a longer name is no source file
MAX_DEPTH = 256  # directories in a name: the trees are hashed recursively (libfabric: 9)
_ENCODING = ("utf-8", "surrogateescape")  # names as bytes, exactly as an unpack writes them
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


class ArchiveError(ValueError):
    """Why an archive is `refused` (a member it must not hold, a bound passed) or
    `unreadable` (not a tar stream); the text is one line."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def _refused(member: tarfile.TarInfo | None, why: str) -> ArchiveError:
    where = f"member {shown(member.name)}: " if member is not None else ""
    return ArchiveError("refused", f"{where}{why}")


class _Capped:
    """The uncompressed stream, refused once it passes MAX_STREAM_BYTES (a gzip bomb, or
    headers that declare an endless name)."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.left = stream, limit

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size if size >= 0 else self.left + 1)
        self.left -= len(data)
        if self.left < 0:
            raise _refused(None, f"more than {MAX_STREAM_BYTES >> 20} MiB unpacked")
        return data


def _uncompressed(raw: BinaryIO) -> BinaryIO:
    """gzip, bzip2, xz or a plain tar, by its magic bytes, as one forward-only stream."""
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    return raw


def checked_members(tar: tarfile.TarFile) -> Iterator[tuple[tuple[bytes, ...], tarfile.TarInfo]]:
    """Each member with its path as bytes components, after the checks every reader of an
    untrusted archive needs: refused as soon as its header is read, before its data."""
    for count, member in enumerate(tar, start=1):
        if count > MAX_MEMBERS:
            raise _refused(None, f"more than {MAX_MEMBERS} members")
        parts = _member_path(member)
        if member.isreg():  # also contiguous and GNU sparse files, by their unpacked size
            if member.size > MAX_MEMBER_BYTES:
                raise _refused(member, f"declares {member.size} bytes, over the "
                                       f"{MAX_MEMBER_BYTES >> 20} MiB a member may hold")
        elif member.issym():
            _check_link(member, parts)
        elif not member.isdir():
            kind = "a hard link" if member.islnk() else "a device or FIFO" \
                if member.ischr() or member.isblk() or member.isfifo() else "of an unknown type"
            raise _refused(member, f"is {kind}; a source archive holds files, "
                                   "directories and symlinks")
        yield parts, member


def _member_path(member: tarfile.TarInfo) -> tuple[bytes, ...]:
    name = member.name.encode(*_ENCODING)
    if len(name) > MAX_NAME_BYTES:
        raise _refused(member, f"a name over {MAX_NAME_BYTES} bytes")
    if name.startswith(b"/"):
        raise _refused(member, "an absolute name")
    parts = tuple(p for p in name.split(b"/") if p not in (b"", b"."))
    if b".." in parts:
        raise _refused(member, "a '..' component")
    if not parts:
        raise _refused(member, "an empty name")
    if len(parts) > MAX_DEPTH:
        raise _refused(member, f"a name nested over {MAX_DEPTH} directories deep")
    for part in parts:
        # What git refuses to check in (verify_path with core.protectNTFS, git's default).
        if part.rstrip(b". ").lower() in (b".git", b"git~1"):
            raise _refused(member, "a .git component")
    return parts


def _check_link(member: tarfile.TarInfo, parts: tuple[bytes, ...]) -> None:
    target = member.linkname.encode(*_ENCODING)
    if not target or len(target) > MAX_NAME_BYTES:
        raise _refused(member, "a symlink with an empty or overlong target")
    if target.startswith(b"/"):
        raise _refused(member, f"a symlink to the absolute path {shown(member.linkname)}")
    resolved = posixpath.normpath(posixpath.join(b"/".join(parts[:-1]), target))
    if resolved == b".." or resolved.startswith(b"../"):
        raise _refused(member, f"a symlink out of the archive ({shown(member.linkname)})")


# --- blobs and trees -----------------------------------------------------------------

def _oid(kind: bytes, body: bytes) -> bytes:
    return hashlib.sha1(b"%s %d\0" % (kind, len(body)) + body).digest()


@dataclass(frozen=True)
class _Leaf:
    """A file or symlink as git would check it in, for each end-of-line rule that may
    apply once the attributes are known (they may come later in the stream)."""

    mode: bytes
    raw: bytes  # blob id of the bytes as they are
    crlf_to_lf: bytes | None = None  # blob id with CRLF made LF; None: there is no CRLF
    binary: bool = False  # git's text=auto guess (convert.c gather_stats)
    attributes: bytes | None = None  # the content, for a file named .gitattributes


# Bytes git counts as not printable: controls other than BS, HT, LF, FF, CR, ESC, and DEL.
_NONPRINTABLE = bytes(b for b in range(32) if b not in b"\b\t\n\x0c\r\x1b") + b"\x7f"
_PRINTABLE_CONTROLS = b"\b\t\x0c\x1b"
_CONTROLS = bytes(range(32)) + b"\x7f"


def _is_binary(data: bytes) -> bool:
    """convert.c's convert_is_binary for text=auto: a lone CR, a NUL, or more than one
    non-printable byte in 128 printable ones (a final ^Z does not count)."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") > crlf or b"\0" in data:
        return True
    nonprintable = len(data) - len(data.translate(None, _NONPRINTABLE))
    if data.endswith(b"\x1a"):
        nonprintable -= 1
    controls = len(data) - len(data.translate(None, _CONTROLS))
    printable = len(data) - controls + len(data) - len(data.translate(None, _PRINTABLE_CONTROLS))
    return (printable >> 7) < nonprintable


def _file_leaf(member: tarfile.TarInfo, data: bytes, attributes: bool) -> _Leaf:
    mode = b"100755" if member.mode & 0o100 else b"100644"
    has_crlf = b"\r\n" in data
    return _Leaf(mode, _oid(b"blob", data),
                 _oid(b"blob", data.replace(b"\r\n", b"\n")) if has_crlf else None,
                 _is_binary(data) if has_crlf else False,
                 data if attributes else None)


Node = dict  # name (bytes) -> Node | _Leaf


def _place(root: Node, parts: tuple[bytes, ...], leaf: _Leaf | None,
           member: tarfile.TarInfo) -> None:
    """Put a member in the tree; a name given twice, or a path through a file or link
    (the way an unpack is led to write through a symlink), is refused."""
    node = root
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise _refused(member, "a path through a file or symlink of the archive")
    existing = node.get(parts[-1])
    if leaf is None:
        if existing is None:
            node[parts[-1]] = {}
        elif not isinstance(existing, dict):
            raise _refused(member, "a directory where the archive has a file or symlink")
    elif existing is not None:
        raise _refused(member, "a name the archive holds twice")
    else:
        node[parts[-1]] = leaf


def _stream(archive: Path) -> Iterator[tuple[tuple[bytes, ...], tarfile.TarInfo, bytes]]:
    """Each checked member with its data (files; b"" for directories and links), read
    once from the stream; every failure to read is an ArchiveError."""
    try:
        with archive.open("rb") as raw, \
                tarfile.open(fileobj=_Capped(_uncompressed(raw), MAX_STREAM_BYTES), mode="r|",
                             encoding=_ENCODING[0], errors=_ENCODING[1]) as tar:
            for parts, member in checked_members(tar):
                if not member.isreg():
                    yield parts, member, b""
                    continue
                handle = tar.extractfile(member)
                # Bounded again here, whatever the header said: memory is the cap.
                data = handle.read(MAX_MEMBER_BYTES + 1) if handle is not None else b""
                if len(data) > MAX_MEMBER_BYTES:
                    raise _refused(member, f"holds over {MAX_MEMBER_BYTES >> 20} MiB")
                if len(data) != member.size:
                    raise ArchiveError("unreadable", f"member {shown(member.name)} is cut short")
                yield parts, member, data
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise ArchiveError("unreadable", " ".join(str(exc).split()) or type(exc).__name__) \
            from None


def _read_tree(archive: Path) -> Node:
    root: Node = {}
    for parts, member, data in _stream(archive):
        if member.isdir():
            _place(root, parts, None, member)
        elif member.issym():
            _place(root, parts, _Leaf(b"120000", _oid(
                b"blob", member.linkname.encode(*_ENCODING))), member)
        else:
            _place(root, parts, _file_leaf(member, data, parts[-1] == b".gitattributes"),
                   member)
    return root


def extract(archive: Path, dest: Path) -> None:
    """Unpack an untrusted archive as the new directory `dest`, on any Python: whole, or
    not at all (an ArchiveError, one line, and nothing left behind).

    Every member passes `checked_members` (as for tree_id) while the stream is read,
    and is written into a temporary sibling of `dest` relative to directory descriptors
    opened O_NOFOLLOW, files created O_EXCL|O_NOFOLLOW: no member is written through a
    link, none outside, none over another.  The interpreter's extraction filter is not
    used: it is missing before Python 3.10.12 and 3.11.4, and releases before June 2025
    let a crafted archive past it (CVE-2025-4517; this project's 3.11.7 among them)."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as exc:
        raise ArchiveError("unreadable", f"cannot write {dest}: {exc.strerror}") from None
    try:
        _unpack(archive, tmp)
        os.rename(tmp, dest)  # fails on anything at `dest` but an empty directory
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArchiveError("unreadable", f"cannot write {dest}: {exc.strerror}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _unpack(archive: Path, into: Path) -> None:
    root = os.open(into, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for parts, member, data in _stream(archive):
            parent = _directory(root, parts[:-1], member)
            try:
                if member.isdir():
                    os.close(_directory(parent, parts[-1:], member))
                elif member.issym():
                    os.symlink(member.linkname.encode(*_ENCODING), parts[-1], dir_fd=parent)
                else:
                    fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o755 if member.mode & 0o100 else 0o644,
                                 dir_fd=parent)
                    with os.fdopen(fd, "wb") as out:
                        out.write(data)
            except FileExistsError:
                raise _refused(member, "a name the archive holds twice") from None
            finally:
                if parent != root:
                    os.close(parent)
    finally:
        os.close(root)


def _directory(at: int, parts: tuple[bytes, ...], member: tarfile.TarInfo) -> int:
    """The directory `parts` below descriptor `at`, created where missing, each step
    opened O_NOFOLLOW: a member's path through a link of the archive is refused."""
    fd = at
    for part in parts:
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
        try:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                            dir_fd=fd)
        except OSError:
            raise _refused(member, "a path through a file or symlink of the archive") from None
        finally:
            if fd != at:
                os.close(fd)
        fd = child
    return fd


def tree_id(archive: Path) -> str:
    """The git tree id of the archive's top folder (the root when it has several
    entries): what a spec's `tree:` pins.  Raises ArchiveError, one line."""
    root = _read_tree(archive)
    top = root
    if len(root) == 1 and isinstance(only := next(iter(root.values())), dict):
        top = only
    oid = _tree_oid(top, (), _Attributes(top))
    return oid.hex() if oid is not None else _EMPTY_TREE


def _tree_oid(node: Node, path: tuple[bytes, ...], attributes: _Attributes) -> bytes | None:
    """Git's tree object: entries sorted by name, a directory's name as if it ended in
    '/'; a directory without files is not in git's tree (None)."""
    entries = []
    for name, child in node.items():
        if isinstance(child, dict):
            oid = _tree_oid(child, (*path, name), attributes)
            if oid is not None:
                entries.append((name + b"/", b"40000", name, oid))
        else:
            entries.append((name, child.mode, name, attributes.checked_in(child,
                                                                          (*path, name))))
    if not entries:
        return None
    entries.sort(key=lambda entry: entry[0])
    return _oid(b"tree", b"".join(b"%s %s\0%s" % (mode, name, oid)
                                  for _, mode, name, oid in entries))


# --- .gitattributes, the part that changes what `git add` checks in -------------------

_BLANK = rb"[ \t\r\n]+"
_ATTR_NAME = re.compile(rb"[-_.A-Za-z0-9]+")
_CONTENT_ATTRS = {b"text", b"eol", b"crlf", b"binary", b"ident", b"working-tree-encoding"}
_MACROS = {b"binary": ((b"diff", False), (b"merge", False), (b"text", False))}
_MAX_LINE = 2048  # git ignores longer attribute lines
# Bounds on the attribute work an archive may ask for (libfabric 2.6, the only pinned
# source with attributes, has 4 lines and 2,176 files: about 10,000 steps).
MAX_ATTRIBUTE_RULES = 1000  # content-changing lines in all .gitattributes together
MAX_MATCH_STEPS = 20_000_000  # bytes of names walked by patterns, about 5 s
MAX_ATTRIBUTE_BYTES = 1 << 20  # all .gitattributes files together (libfabric's: 15 bytes)
_UNSET = None  # `!attr`: decided, and neither set nor unset


@dataclass(frozen=True)
class _Rule:
    pattern: _Glob
    basename: bool  # a pattern without '/' matches the last component at any depth
    states: tuple[tuple[bytes, object], ...]  # True, False, _UNSET or a value


class _Attributes:
    """The `.gitattributes` files of a tree, looked up as git does: the deepest file
    first, in each the last matching line first, in each line the last state first."""

    def __init__(self, top: Node) -> None:
        self.rules: dict[tuple[bytes, ...], list[_Rule]] = {}
        self.steps_left = MAX_MATCH_STEPS
        self.bytes_left = MAX_ATTRIBUTE_BYTES
        self._collect(top, ())
        if sum(map(len, self.rules.values())) > MAX_ATTRIBUTE_RULES:
            raise _refused(None, f"more than {MAX_ATTRIBUTE_RULES} .gitattributes lines "
                                 "that change content")

    def _collect(self, node: Node, path: tuple[bytes, ...]) -> None:
        for name, child in node.items():
            if isinstance(child, dict):
                self._collect(child, (*path, name))
            elif name == b".gitattributes" and child.attributes is not None:
                self.bytes_left -= len(child.attributes)
                if self.bytes_left < 0:
                    raise _refused(None, f".gitattributes files over {MAX_ATTRIBUTE_BYTES} "
                                         "bytes together")
                self.rules[path] = _parse_attributes(child.attributes, top_level=not path)

    def lookup(self, path: tuple[bytes, ...]) -> dict[bytes, object]:
        decided: dict[bytes, object] = {}
        for depth in range(len(path) - 1, -1, -1):
            relative = b"/".join(path[depth:])
            for rule in reversed(self.rules.get(path[:depth], ())):
                if self._matches(rule, path[-1] if rule.basename else relative):
                    for name, value in reversed(rule.states):
                        _decide(decided, name, value)
        return decided

    def _matches(self, rule: _Rule, name: bytes) -> bool:
        """The rule's pattern against `name`, within the archive's work budget: each
        match is linear, but files times rules is still the archive's to choose."""
        self.steps_left -= rule.pattern.steps(name)
        if self.steps_left < 0:
            raise _refused(None, f".gitattributes rules over {MAX_MATCH_STEPS} steps "
                                 "to apply to the archive's files")
        return rule.pattern.fullmatch(name)

    def checked_in(self, leaf: _Leaf, path: tuple[bytes, ...]) -> bytes:
        """The blob id `git add` stores for this file (convert.c: convert_attrs and
        crlf_to_git, with core.autocrlf and core.eol unset)."""
        if leaf.mode == b"120000":
            return leaf.raw
        attrs = self.lookup(path)
        if attrs.get(b"ident") is True:
            raise _refused(None, f"{shown(b'/'.join(path).decode(*_ENCODING))}: the ident "
                                 "attribute is not supported")
        encoding = attrs.get(b"working-tree-encoding")
        if isinstance(encoding, bytes) and encoding.lower() != b"utf-8":
            raise _refused(None, f"{shown(b'/'.join(path).decode(*_ENCODING))}: the "
                                 "working-tree-encoding attribute is not supported")
        action = _crlf_action(attrs.get(b"text"))
        if action is None:
            action = _crlf_action(attrs.get(b"crlf"))
        if action != "binary" and action != "auto" and attrs.get(b"eol") in (b"lf", b"crlf"):
            action = "text"
        if leaf.crlf_to_lf is None or action in (None, "binary") \
                or (action == "auto" and leaf.binary):
            return leaf.raw
        return leaf.crlf_to_lf


def _crlf_action(value: object) -> str | None:
    """convert.c's git_path_check_crlf, for the text and the legacy crlf attribute."""
    if value is True or value == b"input":
        return "text"
    if value is False:
        return "binary"
    if value == b"auto":
        return "auto"
    return None


def _decide(decided: dict[bytes, object], name: bytes, value: object) -> None:
    """attr.c fill_one: the first decision for a name stands; the `binary` macro, once set,
    decides its own attributes in the same way."""
    if name in decided:
        return
    decided[name] = value
    if value is True and name in _MACROS:
        for inner, inner_value in reversed(_MACROS[name]):
            _decide(decided, inner, inner_value)


def _parse_attributes(content: bytes, top_level: bool) -> list[_Rule]:
    """attr.c's parse_attr_line, keeping only lines that decide a content attribute."""
    rules = []
    if content.startswith(b"\xef\xbb\xbf"):
        content = content[3:]
    for line in content.split(b"\n"):
        if len(line) >= _MAX_LINE:
            continue
        tokens = re.split(_BLANK, line.strip(b" \t\r\n"))
        if not tokens[0] or tokens[0].startswith(b"#"):
            continue
        states = _parse_states(tokens[1:])
        if states is None:  # git drops a line with an invalid attribute name
            continue
        pattern = tokens[0]
        relevant = any(name in _CONTENT_ATTRS for name, _ in states)
        if pattern.startswith(b"[attr]"):
            if top_level and (relevant or pattern[6:] in _MACROS):
                raise _refused(None, ".gitattributes defines a macro that changes content; "
                                     "not supported")
            continue  # below the top folder git ignores macro definitions
        if not relevant or pattern.startswith(b"!") or pattern.endswith(b"/"):
            continue  # negative patterns are ignored; a 'dir/' pattern matches no file
        if pattern.startswith(b'"'):
            raise _refused(None, ".gitattributes has a quoted pattern; not supported")
        basename = b"/" not in pattern
        rules.append(_Rule(_wildmatch(pattern.lstrip(b"/") if not basename else pattern),
                           basename,
                           tuple((n, v) for n, v in states if n in _CONTENT_ATTRS)))
    return rules


def _parse_states(tokens: list[bytes]) -> list[tuple[bytes, object]] | None:
    states = []
    for token in tokens:
        name, equals, value = token.partition(b"=")
        setting: object = value if equals else True
        if not equals and name[:1] in (b"-", b"!"):
            setting = False if name[:1] == b"-" else _UNSET
            name = name[1:]
        if not _ATTR_NAME.fullmatch(name) or name.startswith((b"-", b"builtin_")):
            return None
        states.append((name, setting))
    return states


_SLASH = ord("/")
_NOT_SLASH = frozenset(range(256)) - {_SLASH}
# ("byte", int), ("set", frozenset), ("star", whether it crosses '/'), ("dirs", None)
_Token = tuple[str, object]


class _Glob:
    """wildmatch.c with WM_PATHNAME, run as a set of states (a Thompson NFA held in the
    bits of an int): a match costs one step per byte of the name whatever the pattern.
    `*` and `?` stop at '/', `**` between slashes spans directories, `[...]` never
    matches '/'.  (The translation to a backtracking regex this replaces took
    exponential time on `*a*a*a...*b` against a long name: attack-1 H-1.)

    Bit i set: token i is next; bit len(tokens): the name matched.  A "byte" or "set"
    token consumes one byte, a "star" any number, and "dirs" is the optional part of
    `**/`: it is followed by a crossing star and a '/', and may skip both."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.accept = 1 << len(tokens)
        bits = {kind: 0 for kind in ("star", "cross", "dirs", "any")}
        self.literal: dict[int, int] = {}
        self.classes: list[tuple[int, frozenset[int]]] = []
        for i, (kind, arg) in enumerate(tokens):
            if kind == "byte":
                self.literal[arg] = self.literal.get(arg, 0) | 1 << i  # type: ignore[index]
            elif kind == "set" and arg is _NOT_SLASH:
                bits["any"] |= 1 << i
            elif kind == "set":
                self.classes.append((1 << i, arg))  # type: ignore[arg-type]
            else:
                bits["cross" if kind == "star" and arg else kind] |= 1 << i
        self.stars, self.cross, self.dirs, self.any = (bits["star"], bits["cross"],
                                                       bits["dirs"], bits["any"])
        self.minimum = sum(kind in ("byte", "set") and not _skippable(tokens, i)
                           for i, (kind, _) in enumerate(tokens))
        self.suffix = _fixed_suffix(tokens)
        self._steps: dict[int, tuple[int, int]] = {}

    def _step(self, byte: int) -> tuple[int, int]:
        """(states that move on to the next token, states that stay) on `byte`."""
        if byte not in self._steps:
            move = self.literal.get(byte, 0) | (self.any if byte != _SLASH else 0)
            move |= sum(bit for bit, accepted in self.classes if byte in accepted)
            self._steps[byte] = move, self.cross | (self.stars if byte != _SLASH else 0)
        return self._steps[byte]

    def _closure(self, states: int) -> int:
        while True:
            grown = states | (states & (self.stars | self.cross | self.dirs)) << 1 \
                | (states & self.dirs) << 3
            if grown == states:
                return states
            states = grown

    def steps(self, name: bytes) -> int:
        """How many state steps `fullmatch(name)` takes at most (for a work budget)."""
        return 0 if len(name) < self.minimum or not name.endswith(self.suffix) else len(name)

    def fullmatch(self, name: bytes) -> bool:
        if not self.steps(name):
            return not name and bool(self._closure(1) & self.accept)
        states = self._closure(1)
        for byte in name:
            move, stay = self._step(byte)
            states = self._closure((states & move) << 1 | states & stay)
            if not states:
                return False
        return bool(states & self.accept)


def _skippable(tokens: list[_Token], i: int) -> bool:
    """Token i is the '/' of a `**/`, which matches no directory at all."""
    return i >= 2 and tokens[i - 2][0] == "dirs"


def _fixed_suffix(tokens: list[_Token]) -> bytes:
    """The bytes every matching name ends with: the pattern's trailing literal bytes
    (a cheap test that spares most names the walk, e.g. `*.cmd`)."""
    tail = []
    for i in range(len(tokens) - 1, -1, -1):
        kind, arg = tokens[i]
        if kind != "byte" or _skippable(tokens, i):
            break
        tail.append(arg)
    return bytes(reversed(tail))  # type: ignore[arg-type]


_NEVER = _Glob([("set", frozenset())])


def _wildmatch(pattern: bytes) -> _Glob:
    """The pattern as git's wildmatch reads it (WM_PATHNAME); an unterminated `[` or a
    final backslash matches nothing, as wildmatch aborts."""
    tokens: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i:i + 1]
        if char == b"*":
            j = i
            while pattern[j:j + 1] == b"*":
                j += 1
            at_start = i == 0 or pattern[i - 1:i] == b"/"
            if j - i >= 2 and at_start and j == n:
                tokens.append(("star", True))
            elif j - i >= 2 and at_start and pattern[j:j + 1] == b"/":
                tokens += [("dirs", None), ("star", True), ("byte", _SLASH)]
                j += 1
            else:
                tokens.append(("star", False))
            i = j
        elif char == b"?":
            tokens.append(("set", _NOT_SLASH))
            i += 1
        elif char == b"\\":
            if i + 1 >= n:
                return _NEVER
            tokens.append(("byte", pattern[i + 1]))
            i += 2
        elif char == b"[":
            accepted, i = _bracket(pattern, i)
            if accepted is None:
                return _NEVER
            tokens.append(("set", accepted))
        else:
            tokens.append(("byte", pattern[i]))
            i += 1
    return _Glob(tokens)


def _bracket(pattern: bytes, i: int) -> tuple[frozenset[int] | None, int]:
    """A `[...]` class from index i (at '['): the bytes it accepts ('/' never) and the
    index after ']'; None for an unterminated class (wildmatch aborts: nothing matches)."""
    n, i = len(pattern), i + 1
    negated = pattern[i:i + 1] in (b"!", b"^")
    i += negated
    items: set[int] = set()
    previous, first = None, True
    while i < n and (first or pattern[i:i + 1] != b"]"):
        first = False
        char = pattern[i]
        if char == ord("\\"):
            if i + 1 >= n:
                return None, n
            char = pattern[i + 1]
            i += 1
        elif char == ord("[") and pattern[i + 1:i + 2] == b":":
            raise _refused(None, ".gitattributes uses a [:class:] pattern; not supported")
        elif char == ord("-") and previous is not None and i + 1 < n \
                and pattern[i + 1:i + 2] != b"]":
            high = pattern[i + 1]
            if high == ord("\\"):
                if i + 2 >= n:
                    return None, n
                high, i = pattern[i + 2], i + 1
            items.update(range(previous, high + 1))
            previous, i = None, i + 2
            continue
        items.add(char)
        previous, i = char, i + 1
    if i >= n:
        return None, n
    accepted = _NOT_SLASH - items if negated else frozenset(items) - {_SLASH}
    return (_NOT_SLASH if accepted == _NOT_SLASH else accepted), i + 1
