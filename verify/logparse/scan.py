"""Turn raw log bytes into small typed events, streaming and in linear time.

Two tiers, because Python's regex engine is slow at trying many patterns at
every byte but fast at finding one literal:

* Tier 1, NCCL records (`NCCL INFO ` / `NCCL WARN `: nearly every line of a
  big log).  Each block is split on the INFO marker (a C-speed scan) and equal
  pieces are counted in C.  Only distinct messages are parsed against the
  patterns of log_patterns.yaml (channel lines once per text after their
  channel number), and only the first occurrences that a verdict needs as
  evidence are located for their line number and `host:pid:tid [dev]`
  context.  Large regular files are split across processes.
* Tier 2, everything else (nccl-tests tables and summaries, libfabric's own
  lines, Neuron CCOM lines, torch errors): the text between NCCL records,
  searched for its anchors, then parsed line by line; nccl-tests rows are
  read in order after their table header.

Any prefix seen in the wild (Open MPI `[1,3]<stdout>:`, srun `0: `, pdsh
`host: `, CloudWatch `| ts |`, Ray `(pid=..)`) and glued lines are handled:
patterns are searched anywhere in the text and may overlap.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from verify.logparse.sources import Source, chunks, file_blocks, is_plain_file
from verify.tables import load_table

RECORD_RE = re.compile(rb"([A-Za-z0-9][\w.-]*):(\d+):(\d+) \[(\d+)\]")
# Open MPI --tag-output `[1,3]<stdout>:`, SageMaker's `[1,mpirank:3,algo-1]<stdout>:`,
# srun --label `3: `, torchrun --tee `[rank3]:`.
MPI_RANK_RE = re.compile(rb"\[1,(?:mpirank:)?(\d+)(?:,[\w.-]+)?\]<std(?:out|err)>:|^\s*(\d+): |"
                         rb"\[rank(\d+)\]:")
# No leading space: shared logs often have their `host:pid:tid [dev] ` prefix stripped,
# leaving records at the start of a line.
INFO_MARKER = b"NCCL INFO "
CHANNEL_HEAD_RE = re.compile(rb"Channel \d+(?:/\d+)? : ")
WARN_MARKER = b"NCCL WARN "
WARN_RE = re.compile(WARN_MARKER + rb"([^\n]*)")
INFO_MESSAGE_RE = re.compile(INFO_MARKER + rb"([^\n]*)")
TIER1_MARKERS = (INFO_MARKER, WARN_MARKER)
ROW_TYPES = "float|double|half|bfloat16|bf16|fp8[a-z0-9]*|fp16|fp32|fp64|int8|uint8|int32|" \
            "uint32|int64|uint64|int|char"
ROW_START_RE = re.compile(rf"(?<![\w.])(\d+)\s+(\d+)\s+({ROW_TYPES})\s".encode())
# Regular files this large (one, or together) are counted by several processes
# (EFAKIT_PARALLEL_MIN_BYTES overrides).
PARALLEL_MIN_BYTES = int(os.environ.get("EFAKIT_PARALLEL_MIN_BYTES", 64 << 20))
KEY_CACHE_MAX = 200_000  # distinct messages remembered (bounded memory)
PREFIX_PROBE = 512  # new pieces in a block enough to tell whether line prefixes all differ
MAX_EXTRA_PIECES = 64  # beyond this many, other lines are found by checking every line


@dataclass(frozen=True)
class Context:
    host: str | None
    pid: int | None
    dev: int | None
    mpi_rank: int | None


@dataclass
class Event:
    """A message kind with its fields; `line` is None when not located (counted only)."""

    kind: str
    fields: dict[str, str | None]
    file: str
    line: int | None
    ctx: Context | None
    text: str
    count: int = 1


@dataclass
class Row:
    """One nccl-tests result row (raw tokens mapped by the header's columns)."""

    file: str
    line: int
    values: dict[str, str]


class Sink(Protocol):
    def event(self, event: Event) -> None: ...

    def row(self, row: Row) -> None: ...

    def wants_evidence(self, kind: str, fields: dict[str, str | None]) -> bool: ...


@dataclass(frozen=True)
class Pattern:
    name: str
    regex: re.Pattern[bytes]
    message: str | None
    needs: tuple[bytes, ...]


@cache
def patterns() -> tuple[Pattern, ...]:
    rows = load_table("log_patterns")["patterns"]
    return tuple(Pattern(r["name"], re.compile(r["regex"].encode()), r.get("message"),
                         tuple(n.encode() for n in r["needs"])) for r in rows)


@cache
def tier2_regex() -> re.Pattern[bytes]:
    anchors = load_table("log_patterns")["tier2_anchors"]
    return re.compile(b"|".join([re.escape(a.encode()) for a in anchors]
                                + [ROW_START_RE.pattern]))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@cache
def _needles() -> tuple[re.Pattern[bytes], dict[bytes, tuple[int, ...]]]:
    """One regex over every `needs` literal (longest first), and who needs each."""
    owners: dict[bytes, list[int]] = {}
    for index, pattern in enumerate(patterns()):
        for needle in pattern.needs:
            owners.setdefault(needle, []).append(index)
    ordered = sorted(owners, key=len, reverse=True)
    return (re.compile(b"|".join(re.escape(n) for n in ordered)),
            {n: tuple(idx) for n, idx in owners.items()})


@cache
def _channel_pattern() -> Pattern:
    return next(p for p in patterns() if p.name == "channel")


def parse_text(text: bytes) -> list[tuple[str, dict[str, str | None]]]:
    """Every pattern match in `text` (a message or a line), in text order."""
    if text.startswith(b"NCCL INFO Channel ") and b" | " not in text:
        # Most distinct records of a big job are channel lines: one pattern decides.
        match = _channel_pattern().regex.search(text)
        if match is None:
            return []
        return [("channel", {k: (_decode(v) if v is not None else None)
                             for k, v in match.groupdict().items()})]
    needle_re, owners = _needles()
    candidates: set[int] = set()
    for needle in set(needle_re.findall(text)):
        candidates.update(owners[needle])
    found = []
    table = patterns()
    for index in sorted(candidates):
        pattern = table[index]
        for match in pattern.regex.finditer(text):
            fields = {k: (_decode(v) if v is not None else None)
                      for k, v in match.groupdict().items()}
            message_at = None
            if pattern.message:
                message_at = match.end() if pattern.message == "after" else match.start()
            found.append((match.start(), pattern.name, fields, message_at))
    found.sort(key=lambda item: item[0])
    starts = [start for start, _, _, message_at in found if message_at is not None]
    for _, _, fields, message_at in found:
        if message_at is not None:
            end = min((start for start in starts if start > message_at), default=len(text))
            fields["message"] = _message(text[message_at:end], end < len(text))
    return [(name, fields) for _, name, fields, _ in found]


def _message(raw: bytes, glued: bool) -> str:
    """A failure's message: its text up to the next failure record on the same line.
    Before one (glued lines, CloudWatch's 'record | record'), the text from the
    last ' | ' on belongs to that record's prefix."""
    if glued and b" | " in raw:
        raw = raw[:raw.rindex(b" | ")]
    return _decode(raw).strip()


def context(line: bytes) -> Context:
    records = RECORD_RE.findall(line)
    mpi = MPI_RANK_RE.search(line)
    mpi_rank = int(next(g for g in mpi.groups() if g is not None)) if mpi else None
    if not records:
        return Context(None, None, None, mpi_rank)
    host, pid, _tid, dev = records[-1]
    return Context(_decode(host), int(pid), int(dev), mpi_rank)


# -- tier 1 -------------------------------------------------------------------------
Signature = tuple  # the events a message means: ((kind, ((field, value), ...)), ...)
EXAMPLES_PER_FACT = 3  # located lines kept per evidence key in one byte range


def evidence_key(kind: str, fields: dict[str, str | None]) -> tuple:
    """What one located example stands for (a rank's connection kind, a fact's value)."""
    if kind == "channel":
        rank = fields["dst"] if fields.get("dir") == "receive" else fields["src"]
        return (kind, rank, fields.get("net"), fields.get("gdr"))
    if kind == "comm_init":
        return (kind, fields.get("nnodes"))
    return (kind, tuple(fields.items()))


def _occurrences(data: bytes, piece: bytes) -> Iterator[tuple[int, int]]:
    """Where `piece` stands as a whole piece in `data`: the offsets of the lines it
    carries after its record's own line."""
    needle = INFO_MARKER + piece
    start, end = piece.find(b"\n") + 1, piece.rfind(b"\n") + 1
    at = data.find(needle)
    while at >= 0:
        after = at + len(needle)
        if after == len(data) or data.startswith(INFO_MARKER, after):
            base = at + len(INFO_MARKER)
            yield base + start, base + end
        at = data.find(needle, at + 1)


class SignatureTable:
    """What messages mean, shared by every counter in a process.

    Per-rank files and byte ranges repeat the same messages (and often the same
    pieces), so each distinct text is parsed once per process, not once per
    input.  A message is looked up by text (a channel line by the text after
    its channel number, which is no part of its meaning); signatures get small
    int ids so per-piece work hashes ints rather than nested tuples.
    """

    def __init__(self) -> None:
        self.id_of_piece: dict[bytes | tuple, int] = {}
        self.id_of_text: dict[bytes, int] = {}
        self.id_of_channel: dict[bytes, int] = {}  # by the text after "Channel NN/M : "
        self.id_of_sig: dict[Signature, int] = {}
        self.sigs: list[Signature] = []
        self.ev_keys: list[tuple] = []  # per signature id

    def id_of(self, key: bytes | tuple[bytes, bytes]) -> int:
        """The signature id of a piece (an INFO message up to the next record's marker)
        or ("WARN", message) pair, parsing its message if the text is new."""
        sid = self.id_of_piece.get(key)
        if sid is not None:
            return sid
        if key.__class__ is tuple:
            cache, text_key = self.id_of_text, WARN_MARKER + key[1]
            text = text_key
        else:
            end = key.find(b"\n")  # type: ignore[union-attr]
            message = (key if end < 0 else key[:end]).rstrip(b"\r")  # type: ignore[index]
            head = CHANNEL_HEAD_RE.match(message)
            if head is not None and b" | " not in message:
                cache, text_key = self.id_of_channel, message[head.end():]
            else:
                cache, text_key = self.id_of_text, message
            text = INFO_MARKER + message
        sid = cache.get(text_key)
        if sid is None:
            sig = tuple((kind, tuple(fields.items())) for kind, fields in parse_text(text))
            sid = self.id_of_sig.get(sig)
            if sid is None:
                sid = self.id_of_sig[sig] = len(self.sigs)
                self.sigs.append(sig)
                self.ev_keys.append(tuple(evidence_key(k, dict(f)) for k, f in sig))
            cache[text_key] = sid
        self.id_of_piece[key] = sid
        return sid

    def trim(self) -> None:
        """Bounded memory: forget pieces and texts (they are parsed again if they
        come back); called only when no counter holds unfolded pieces."""
        if len(self.id_of_piece) >= KEY_CACHE_MAX:
            self.id_of_piece.clear()
        if len(self.id_of_text) + len(self.id_of_channel) >= KEY_CACHE_MAX:
            self.id_of_text.clear()
            self.id_of_channel.clear()


SIGNATURES = SignatureTable()  # one per process (forked workers start from a copy)


class Tier1Counter:
    """NCCL records of one byte range, counted by meaning, with a few located examples.

    Identical pieces are counted in C; a piece new to the range costs a little
    Python (its signature id from SIGNATURES, and whether it is cited).  Memory
    stays bounded: pieces are folded into per-signature counts whenever too many
    pile up.
    """

    def __init__(self) -> None:
        self.lines = 0
        self.signatures: Counter = Counter()  # Signature -> count, filled by finish()
        self.examples: dict[Signature, list[tuple[int, bytes]]] = {}  # by finish()
        self.tier2: list[tuple[int, bytes]] = []  # (line in range, line) for tier 2
        self._raw: Counter = Counter()  # piece (or WARN pair) -> count, until folded
        self._counts: Counter = Counter()  # signature id -> folded count
        self._closed: set[int] = set()  # ids whose evidence keys have their examples
        self._cited: Counter = Counter()
        self._examples: dict[int, list[tuple[int, bytes]]] = {}
        self._extra: set[bytes] = set()  # pieces that carry non-record lines
        self._dense = False  # too many such pieces: every line is checked instead
        self._by_message = False  # line prefixes all differ: count messages, not pieces
        self._warn_pieces: dict[bytes, list[tuple[bytes, bytes]]] = {}  # their WARN records
        self.problems: list[str] = []

    def _claim(self, sid: int) -> bool:
        """Whether a new piece with this signature is to be cited; if so its citation
        is counted now (it stands in this block, so locating it cannot fail)."""
        if sid in self._closed:
            return False
        cited, keys = self._cited, SIGNATURES.ev_keys[sid]
        if all(cited[key] >= EXAMPLES_PER_FACT for key in keys):  # (none: means nothing)
            self._closed.add(sid)  # citations only grow: never wanted again
            return False
        for key in keys:
            cited[key] += 1
        return True

    def scan(self, data: bytes, line_base: int) -> None:
        """Count `data` (whole lines; its first line is `line_base`) and locate examples."""
        if not data.endswith(b"\n"):
            data = self._end_of_input(data)
        lines = data.count(b"\n")
        if self._by_message:
            self._scan_messages(data, line_base, lines)
        else:
            self._scan_pieces(data, line_base)
        if len(self._raw) >= KEY_CACHE_MAX:
            self._fold()
        self.lines += lines

    def _scan_pieces(self, data: bytes, line_base: int) -> None:
        """Splitting on the `NCCL INFO ` marker is a C-speed scan; each piece is a
        record's message plus whatever follows up to the next record, and equal
        pieces are counted in C.  Lines that are not NCCL records sit inside
        pieces after their first line (or before the first record): those
        regions go to tier 2.

        Where every line's prefix differs (a timestamp per line), no piece ever
        repeats and each costs Python; once a block shows that, the counter
        switches to counting messages instead.
        """
        parts = data.split(INFO_MARKER)
        head = parts[0]
        del parts[0]
        raw = self._raw
        before = [raw[piece] for piece in self._warn_pieces]
        known = len(raw)
        raw.update(parts)  # counted in C; new keys are appended in insertion order
        new = self._new_keys(known)
        if len(new) >= PREFIX_PROBE and \
                len({key[key.rfind(b"\n"):] for key in new}) * 2 > len(new):
            self._by_message = True  # the pieces' tails (next line's prefix) all differ
        new += self._count_warns(head, new, before)
        todo = set()
        for key in new:
            if self._claim(SIGNATURES.id_of(key)):
                todo.add(key)
            if not self._dense and key.__class__ is bytes and key.count(b"\n") > 1:  # type: ignore[union-attr]
                self._extra.add(key)  # type: ignore[arg-type]
                if len(self._extra) > MAX_EXTRA_PIECES:
                    self._dense, self._extra = True, set()
        if todo:
            self._locate(data, line_base, todo, parts, len(head))
        if self._dense:
            self.tier2.extend(_tier2_python_lines(data, line_base))
        else:
            regions = [(0, head.rfind(b"\n") + 1)] if b"\n" in head else []
            for key in self._extra:
                regions.extend(_occurrences(data, key))
            if regions:
                self._tier2(data, line_base, sorted(regions))

    def _scan_messages(self, data: bytes, line_base: int, lines: int) -> None:
        """Count each record's message (a line's text after its first marker) in C.
        Slower than pieces where pieces repeat, but independent of line prefixes.
        Other lines are found by their number: with none (one INFO record per line,
        no WARN), tier 2 has nothing to read."""
        raw, known = self._raw, len(self._raw)
        infos = INFO_MESSAGE_RE.findall(data)
        raw.update(infos)
        warns = WARN_RE.findall(data) if WARN_MARKER in data else []
        raw.update((b"WARN", m) for m in warns)
        found, pos = [], 0
        for key in self._new_keys(known):
            if self._claim(SIGNATURES.id_of(key)):
                if key.__class__ is tuple:
                    found.append((data.find(WARN_MARKER + key[1]), key))
                else:  # first occurrences come in order: each search starts at the last
                    pos = data.find(INFO_MARKER + key + b"\n", pos)  # type: ignore[operator]
                    found.append((pos, key))
        self._cite(data, line_base, found)
        if warns or lines > len(infos):
            self.tier2.extend(_tier2_python_lines(data, line_base))

    def _count_warns(self, head: bytes, new: list, before: list[int]) -> list:
        """Count the block's WARN records; return the (WARN, message) keys new to it.

        WARN records sit inside INFO pieces (or the block's head), so they are
        counted from how often their pieces occurred (`before` holds the known WARN
        pieces' counts before this block): a block without one costs no search.
        """
        raw, warn_pieces = self._raw, self._warn_pieces
        for key in new:
            if WARN_MARKER in key:
                warn_pieces[key] = [(b"WARN", m) for m in WARN_RE.findall(key)]
        warns: Counter = Counter()
        if WARN_MARKER in head:
            warns.update((b"WARN", m) for m in WARN_RE.findall(head))
        for (piece, pairs), seen in itertools.zip_longest(warn_pieces.items(), before,
                                                          fillvalue=0):
            if (delta := raw[piece] - seen) > 0:  # type: ignore[operator]
                for pair in pairs:  # type: ignore[union-attr]
                    warns[pair] += delta
        if not warns:
            return []
        known = len(raw)
        raw.update(warns)
        return self._new_keys(known)

    def _new_keys(self, known: int) -> list:
        """Keys added to the counter since it held `known`, in the order first seen.
        They are the newest in insertion order: read from the end, since skipping the
        known ones from the start would walk all of them."""
        added = list(itertools.islice(reversed(self._raw), len(self._raw) - known))
        added.reverse()
        return added

    def _end_of_input(self, data: bytes) -> bytes:
        """`data` ends the input without a newline.  If that last line is an NCCL
        record it may have been cut mid-word ('via NET/Libfabric/4/GD' would read as a
        connection without GDR): it is left out, and said so.  Other lines are kept."""
        start = data.rfind(b"\n") + 1
        last = data[start:]
        if INFO_MARKER in last or WARN_MARKER in last:
            self.problems.append(f"input ends early: its last line has no newline, so the NCCL "
                                 f"record on it may be cut short and is not used: "
                                 f"{_decode(last[:120])}")
            return data[:start]
        return data + b"\n"

    def _tier2(self, data: bytes, line_base: int, regions: list[tuple[int, int]]) -> None:
        line_no, counted = line_base, 0
        for start, end in regions:
            line_no += data.count(b"\n", counted, start)
            counted = start
            self.tier2.extend(_tier2_python_lines(data[start:end], line_no))

    def _example(self, key: bytes | tuple, data: bytes, at: int, line_no: int) -> None:
        start = data.rfind(b"\n", 0, at) + 1
        stop = data.find(b"\n", at)
        self._examples.setdefault(SIGNATURES.id_of(key), []).append(
            (line_no, data[start:stop if stop >= 0 else len(data)]))

    def _locate(self, data: bytes, line_base: int, todo: set, parts: list[bytes],
                pos: int) -> None:
        """Cite the first occurrence of each piece in `todo`; `parts` is `data` split
        on the INFO marker without its head, which ends at `pos`."""
        warn_todo = {key for key in todo if isinstance(key, tuple)}
        info_todo = todo - warn_todo
        found = [(data.find(WARN_MARKER + key[1]), key) for key in warn_todo]
        for part in parts:
            if not info_todo:
                break
            if part in info_todo:
                info_todo.discard(part)
                found.append((pos, part))
            pos += len(INFO_MARKER) + len(part)
        self._cite(data, line_base, found)

    def _cite(self, data: bytes, line_base: int, found: list[tuple[int, bytes | tuple]]
              ) -> None:
        """Keep the line at each (offset, key) as an example, numbered."""
        line_no, counted = line_base, 0
        for at, key in sorted(found, key=lambda item: item[0]):
            line_no += data.count(b"\n", counted, at)
            counted = at
            self._example(key, data, at, line_no)

    def _fold(self) -> None:
        """Move piece counts to their signatures and forget the pieces (bounded memory)."""
        counts, id_of = self._counts, SIGNATURES.id_of
        for key, count in self._raw.items():
            counts[id_of(key)] += count
        self._raw.clear()
        self._warn_pieces.clear()
        SIGNATURES.trim()

    def finish(self) -> Tier1Counter:
        """Fold, and key counts and examples by signature (ids mean nothing in other
        processes)."""
        self._fold()
        sigs = SIGNATURES.sigs
        self.signatures = Counter({sigs[sid]: n for sid, n in self._counts.items() if sigs[sid]})
        self.examples = {sigs[sid]: found for sid, found in self._examples.items()}
        for table in (self._counts, self._closed, self._cited, self._examples, self._extra,
                      self._warn_pieces):
            table.clear()
        return self


def _range_worker(args: tuple[str, int, int]) -> Tier1Counter:
    path, start, end = args
    counter = Tier1Counter()
    for block in file_blocks(path, start, end):
        counter.scan(block, counter.lines + 1)
    return counter.finish()


def _split_points(path: str, size: int, parts: int) -> list[tuple[str, int, int]]:
    bounds = [0]
    with open(path, "rb") as handle:
        for i in range(1, parts):
            handle.seek(size * i // parts)
            handle.readline()
            bounds.append(max(handle.tell(), bounds[-1]))
    bounds.append(size)
    return [(path, a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def scan_sources(sources: list[Source], sink: Sink) -> list[Scanner]:
    """Scan every source into the sink, in input order.

    When the regular files are large together, a pool of processes counts them
    (a file of PARALLEL_MIN_BYTES or more in one byte range per worker, smaller
    files whole, so a directory of per-rank logs is spread too); the results
    are delivered here in order.  stdin and .gz inputs are read in this process.
    """
    sizes = [s.path.stat().st_size if is_plain_file(s) else 0 for s in sources]  # type: ignore[union-attr]
    workers = max(1, min(os.cpu_count() or 1, 4))
    if sum(sizes) < PARALLEL_MIN_BYTES:
        return [Scanner(source, sink).run() for source in sources]
    import multiprocessing

    ranges = [_split_points(str(source.path), size,
                            workers if size >= PARALLEL_MIN_BYTES else 1) if size else []
              for source, size in zip(sources, sizes, strict=True)]
    work = [item for items in ranges for item in items]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        counted = pool.imap(_range_worker, work, chunksize=max(1, len(work) // (workers * 16)))
        return [Scanner(source, sink).take([next(counted) for _ in items], size) if items
                else Scanner(source, sink).run()
                for source, size, items in zip(sources, sizes, ranges, strict=True)]


# -- tier 2 -------------------------------------------------------------------------
def _tier2_python_lines(data: bytes, line_base: int) -> Iterator[tuple[int, bytes]]:
    """The lines of `data` that are not NCCL records and carry a tier-2 anchor.

    Line by line: the anchor regex has no literal prefix (nccl-tests rows), so
    searching a whole block with it costs ~80 ms per MB, while skipping records
    with two substring tests and searching only the other lines costs a tenth.
    """
    regex = tier2_regex()
    for line_no, line in enumerate(data.split(b"\n"), line_base):
        if INFO_MARKER not in line and WARN_MARKER not in line and regex.search(line):
            yield line_no, line


# -- the scanner --------------------------------------------------------------------
class Scanner:
    """Scan one source into the sink: tier 1 and tier 2, then totals."""

    def __init__(self, source: Source, sink: Sink) -> None:
        self.source = source
        self.sink = sink
        self.lines = 0
        self.bytes = 0
        self.problems: list[str] = []
        self._columns: list[str] | None = None

    def run(self) -> Scanner:
        """Count the whole source in this process."""
        counter, size = Tier1Counter(), 0
        for chunk in chunks(self.source, problems=self.problems):
            counter.scan(chunk, counter.lines + 1)
            size += len(chunk)
        return self.take([counter.finish()], size)

    def take(self, ranges: Iterable[Tier1Counter], size: int) -> Scanner:
        """Deliver the source's counted byte ranges, in order."""
        for counter in ranges:
            self._deliver(counter, self.lines)
            self.lines += counter.lines
            self.problems.extend(f"{self.source.name}: {p}" for p in counter.problems)
        self.bytes = size
        return self

    def _deliver(self, counter: Tier1Counter, line_offset: int) -> None:
        """Hand counted events to the sink (located examples first as evidence),
        then the range's other lines in order."""
        name = self.source.name
        for line_no, line in counter.tier2:
            self._line(line_offset + line_no, line)
        for sig, count in counter.signatures.items():
            examples = counter.examples.get(sig, [])
            for kind, items in sig:
                fields = dict(items)
                remaining = count
                for line_no, line in examples:
                    if remaining <= 0 or not self.sink.wants_evidence(kind, fields):
                        break
                    self.sink.event(Event(kind, fields, name, line_offset + line_no,
                                          context(line), _decode(line).rstrip("\r")))
                    remaining -= 1
                if remaining > 0:
                    self.sink.event(Event(kind, fields, name, None, None, kind, remaining))

    # -- tier 2 lines and nccl-tests tables --------------------------------------
    def _line(self, line_no: int, line: bytes) -> None:
        if any(marker in line for marker in TIER1_MARKERS):
            return  # an NCCL record: tier 1 counted it
        name = self.source.name
        if self._columns is not None:
            row = ROW_START_RE.search(line)
            if row:
                tokens = _decode(line[row.start():]).split()
                self.sink.row(Row(name, line_no, dict(zip(self._columns, tokens, strict=False))))
                return
        text = _decode(line).rstrip("\r")
        ctx = None
        for kind, fields in parse_text(line):
            ctx = ctx or context(line)
            self.sink.event(Event(kind, fields, name, line_no, ctx, text))
            if kind in ("tests_header", "nccom_header"):
                header = text[text.find("size"):]
                self._columns = _columns(header)
            elif kind == "avg_busbw":
                self._columns = None


def _columns(header: str) -> list[str]:
    """Column names from a table header, with out-of-place/in-place prefixes."""
    names = [t.split("(")[0].lstrip("#").lower() for t in header.split()]
    names = [n for n in names if n]
    out, seen_time = [], 0
    for name in names:
        if name == "time":
            seen_time += 1
        side = "oop_" if seen_time == 1 else "ip_" if seen_time >= 2 else ""
        out.append(side + name if name in ("time", "algbw", "busbw", "wrong", "error") else name)
    return out
