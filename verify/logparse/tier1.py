"""Tier 1: count the NCCL records of one byte range by meaning, in C where possible.

NCCL's own records (`NCCL INFO ` / `NCCL WARN `) are nearly every line of a
big log.  Each block is split on the INFO marker (a C-speed scan) and equal
pieces are counted in C.  Only distinct messages are parsed (channel lines
once per text after their channel number), and only the first occurrences
that a verdict needs as evidence are located for their line number.  Lines
that are not NCCL records are found from the pieces that carry them and kept
for tier 2.  Logs whose every line prefix differs are counted by message.
Where pieces (or messages) stop repeating because every process prints its
own pid, host or rank (thousands of ranks), pieces are counted by shape:
digits masked in C, each shape read once, per-process fields (ranks, device)
left to the cited lines; ranks_detail then lists only cited ranks, without
connection counts (see _scan_classes).  Messages whose digits are their
meaning and differ per rank (comm lines) are counted by their field values,
found by one regex per message form at the places bytes.find gives, with no
Python per piece except that match (see _read_by_regex).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from collections.abc import Iterator

from verify.logparse.patterns import (
    INFO_MARKER,
    WARN_MARKER,
    decode,
    field_spans,
    parse_text,
    tier2_lines,
)

CHANNEL_HEAD_RE = re.compile(rb"Channel \d+(?:/\d+)? : ")
# A WARN record's message, and the `file:line` (or function) its prefix names: an error
# trace's source proves which transport ran (trace_transport in log_patterns.yaml).
WARN_RE = re.compile(rb"(?:([\w./]+):\d+ )?" + WARN_MARKER + rb"([^\n]*)")
INFO_MESSAGE_RE = re.compile(INFO_MARKER + rb"([^\n]*)")
KEY_CACHE_MAX = 200_000  # distinct messages remembered (bounded memory)
PREFIX_PROBE = 512  # new pieces in a block enough to tell whether line prefixes all differ
MAX_EXTRA_PIECES = 64  # beyond this many, other lines are found by checking every line
# Beyond this many distinct pieces, with most of a block's pieces new, line prefixes or
# rank numbers make nearly every line distinct (a pid per rank at thousands of ranks):
# the counter then counts pieces by their shape, digits masked (see _scan_classes).
CLASS_MIN_PIECES = 8_192
DIGIT_MASK = bytes.maketrans(b"0123456789", b"0000000000")
# Fields naming one process (a channel's ranks and device, a comm line's rank): counted
# by shape they are left out, so a job's thousands of ranks cost nothing per rank; the
# cited lines keep them.
RANKLESS = ("src", "dst", "dev", "rank")
DIGITS_VARY = -1  # class id of a shape whose meaning depends on its digits

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


def _numbered(data: bytes, line_base: int, items: list[tuple]) -> Iterator[tuple[int, tuple]]:
    """Each item, whose first element is an offset in `data` (ascending), with the
    number of the line it falls on; newlines are counted once, in one pass."""
    line_no, counted = line_base, 0
    for item in items:
        line_no += data.count(b"\n", counted, item[0])
        counted = item[0]
        yield line_no, item


def _own_line_warns(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (source, message) of WARN records not glued after an INFO record on their line
    (those are read with that INFO message), each message cut where a glued INFO record
    begins, as the pieces are."""
    found = []
    for match in WARN_RE.finditer(data):
        start = data.rfind(b"\n", 0, match.start()) + 1
        if data.find(INFO_MARKER, start, match.start()) < 0:
            message = match.group(2)
            glued = message.find(INFO_MARKER)
            found.append((match.group(1) or b"", message if glued < 0 else message[:glued]))
    return found


@functools.lru_cache(maxsize=1024)
def _message_form(message: bytes, cls: tuple) -> tuple | None:
    """What a varying message's pieces have in common with other messages of its
    kind: a regex that matches, in unmasked text, its records and those that differ
    from it only in how many digits a number has (a rank printed as 7 or 7000) or in
    what follows its last field (`Init START`, `Init COMPLETE`: no part of what it
    means), with a group per field; for each field its group; and which fields the
    template names (equal forms build equal signatures from equal values); and the
    literal its records start with.  None
    for a glued record (no newline), or fields that overlap or end inside a number
    (where a run of digits could be split two ways)."""
    spans = cls[1]
    if not message.endswith(b"\n"):
        return None
    distinct = sorted(set(spans))
    parts, at = [re.escape(INFO_MARKER)], 0

    def literal(text: bytes) -> bytes:
        return re.sub(rb"0+", b"[0-9]+", re.escape(text))

    for a, b in distinct:
        if a < at or b > len(message) - 1 or a == b or \
                message[a - 1:a] == b"0" or message[b:b + 1] == b"0":
            return None
        parts += [literal(message[at:a]), b"(", literal(message[a:b]), b")"]
        at = b
    if not distinct:
        parts.append(literal(message[at:]))
    names = tuple((kind, tuple((name, span is None) for name, span in fields))
                  for kind, fields in cls[0])
    lead = min([message.find(b"0") % (len(message) + 1)] + [a for a, _ in distinct])
    return re.compile(b"".join(parts)), tuple(distinct.index(span) for span in spans), names, \
        INFO_MARKER + message[:lead]


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
            source = key[2] + b":0 " if key[2] else b""  # type: ignore[index]
            cache, text_key = self.id_of_text, source + WARN_MARKER + key[1]
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
            sid = cache[text_key] = self.id_of_signature(
                tuple((kind, tuple(fields.items())) for kind, fields in parse_text(text)))
        self.id_of_piece[key] = sid
        return sid

    def id_of_signature(self, sig: Signature) -> int:
        sid = self.id_of_sig.get(sig)
        if sid is None:
            sid = self.id_of_sig[sig] = len(self.sigs)
            self.sigs.append(sig)
            self.ev_keys.append(tuple(evidence_key(k, dict(f)) for k, f in sig))
        return sid

    def class_of(self, shape: bytes, piece: bytes) -> int | tuple:
        """What a masked shape means, from one of its pieces: its signature id when
        every piece of the shape means the same; a rankless channel signature when
        only a channel's ranks and device vary; else where its fields stand (a
        template: each piece's values are sliced from there), or DIGITS_VARY when
        they cannot be placed (each piece is then read on its own)."""
        exact, masked = self.id_of(piece), self.id_of(shape)
        if exact == masked:
            return exact
        sig = self.sigs[masked]
        if sig and all(kind == "channel" for kind, _ in sig):
            return self.id_of_signature(tuple(
                (kind, tuple((k, None if k in RANKLESS else v) for k, v in fields))
                for kind, fields in sig))
        end = shape.find(b"\n")
        spans = field_spans(INFO_MARKER + (shape if end < 0 else shape[:end]))
        if spans is None:
            return DIGITS_VARY
        spans = tuple((kind, tuple((name, None if name in RANKLESS else span)
                                   for name, span in fields)) for kind, fields in spans)
        skip = len(INFO_MARKER)
        flat = tuple((a - skip, b - skip) for _, fields in spans for _, span in fields
                     if span is not None for a, b in (span,))
        return (spans, flat)

    def id_of_values(self, template: tuple, values: tuple[bytes, ...]) -> int:
        """The signature id of a templated piece whose field values are `values`."""
        texts = [value.decode("utf-8", "replace") for value in values]
        at = 0
        sig = []
        for kind, fields in template[0]:
            items = []
            for name, span in fields:
                if span is None:
                    items.append((name, None))
                else:
                    items.append((name, texts[at]))
                    at += 1
            sig.append((kind, tuple(items)))
        return self.id_of_signature(tuple(sig))

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
        self._by_class = False  # nearly every piece distinct: count masked shapes
        self._shapes: Counter = Counter()  # masked piece -> count (class mode)
        self._class: dict[bytes, int | tuple] = {}  # masked piece -> class_of()
        self._valued: dict[tuple, int] = {}  # (shape, field values) -> signature id
        self._varying: set[bytes] = set()  # masked messages whose values differ by piece
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
        known = len(self._raw)
        if self._by_class:
            lines = self._scan_classes(data, line_base)  # counted from its shapes
        elif self._by_message:
            lines = data.count(b"\n")
            self._scan_messages(data, line_base, lines)
        else:
            lines = data.count(b"\n")
            self._scan_pieces(data, line_base)
        if self._by_message and len(self._raw) > CLASS_MIN_PIECES and \
                (len(self._raw) - known) * 2 > lines:
            self._by_class = True  # messages stopped repeating too: count shapes
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
        elif len(raw) > CLASS_MIN_PIECES and len(new) * 2 > len(parts):
            # A prefix or rank number per line: this block and the next are counted by
            # shape (the block's piece counts are taken back first).
            self._by_class = True
            fresh = set(new)
            for key, count in Counter(parts).items():
                if key in fresh:
                    del raw[key]
                else:
                    raw[key] -= count
            self._scan_classes(data, line_base)
            return
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
            self.tier2.extend(tier2_lines(data, line_base))
        else:
            regions = [(0, head.rfind(b"\n") + 1)] if b"\n" in head else []
            for key in self._extra:
                regions.extend(_occurrences(data, key))
            if regions:
                self._tier2(data, line_base, sorted(regions))

    def _scan_classes(self, data: bytes, line_base: int) -> int:
        """Count pieces by shape: digits masked in C (offsets unchanged), split on the
        marker and counted in C, so a distinct pid, host number or rank per line costs
        nothing.  A shape is read once, from its first piece: most mean the same
        whatever their digits; channel lines are counted by connection kind (their
        ranks come from the cited lines); the few shapes whose digits are their
        meaning (versions, comm lines: one per rank and communicator) are read piece
        by piece, as the piece counter would.  Returns the block's line count, and
        looks for WARN records, from its shapes (no pass over the block for either).
        """
        masked = data.translate(DIGIT_MASK)
        parts = masked.split(INFO_MARKER)
        head = parts[0]
        del parts[0]
        block = Counter(parts)
        shapes, classes, raw = self._shapes, self._class, self._raw
        shapes.update(block)
        found: list[tuple[int, bytes | tuple]] = []
        extra = []
        lines, warned = head.count(b"\n"), WARN_MARKER in head
        valued = self._valued
        templated: dict[bytes, tuple] = {}
        for shape in block:
            cls = classes.get(shape)
            if cls is None:
                at = masked.find(INFO_MARKER + shape) + len(INFO_MARKER)
                piece = data[at:at + len(shape)]
                cls = classes[shape] = SIGNATURES.class_of(shape, piece)
                if cls.__class__ is int and cls != DIGITS_VARY and \
                        self._claim(SIGNATURES.id_of(piece)):
                    found.append((at, piece))  # cited as itself; its count moves with it
                    shapes[shape] -= 1
                    raw[piece] += 1
            if cls.__class__ is tuple:  # read in the pass below
                shapes[shape] -= block[shape]
                templated[shape] = cls
            if cls == DIGITS_VARY:
                shapes[shape] -= block[shape]
                needle, size = INFO_MARKER + shape, len(shape)
                at = masked.find(needle)
                while at >= 0:
                    start = at + len(INFO_MARKER)
                    if start + size == len(masked) or \
                            masked.startswith(INFO_MARKER, start + size):  # a whole piece
                        piece = data[start:start + size]
                        raw[piece] += 1
                        if raw[piece] == 1 and self._claim(SIGNATURES.id_of(piece)):
                            found.append((start, piece))
                    at = masked.find(needle, start + 1)
            newlines = shape.count(b"\n")
            lines += newlines * block[shape]
            if newlines > 1:
                extra.append(shape)
            warned = warned or WARN_MARKER in shape
        if templated:
            self._read_templated(data, masked, templated, block, found)
        if len(valued) > KEY_CACHE_MAX:
            valued.clear()  # a cache: the counts are already in self._counts
        if warned:
            warns = Counter((b"WARN", m, s or b"") for s, m in _own_line_warns(data))
            known = len(raw)
            raw.update(warns)
            found += [(data.find(WARN_MARKER + key[1]), key) for key in self._new_keys(known)
                      if self._claim(SIGNATURES.id_of(key))]
        if found:
            self._cite(data, line_base, found)
        if len(extra) > MAX_EXTRA_PIECES:
            self.tier2.extend(tier2_lines(data, line_base))
            return lines
        regions = [(0, head.rfind(b"\n") + 1)] if b"\n" in head else []
        for shape in extra:
            regions.extend(_occurrences(masked, shape))
        if regions:
            self._tier2(data, line_base, sorted(regions))
        return lines

    def _read_templated(self, data: bytes, masked: bytes, templated: dict[bytes, tuple],
                        block: Counter, found: list) -> None:
        """Count the pieces of shapes whose digits are their meaning.  Shapes with the
        same masked message whose every piece prints the same message (a version
        line on every rank) are counted at once, checked by counting that message in
        C; the others (a comm line per rank) are counted by their values, found in C
        by one regex per message form (see _read_by_regex), or where that cannot
        stand, read piece by piece, each value sliced where the shape puts it."""
        by_message: dict[bytes, list[bytes]] = {}
        for shape in templated:
            end = shape.find(b"\n")
            by_message.setdefault(shape if end < 0 else shape[:end + 1], []).append(shape)
        counts = self._counts
        forms: dict[tuple, list[bytes]] = {}
        for message, shapes in by_message.items():
            first = masked.find(INFO_MARKER + message) + len(INFO_MARKER)
            text = data[first:first + len(message)]
            total = sum(block[shape] for shape in shapes)
            if total > 2 and message not in self._varying and \
                    data.count(INFO_MARKER + text) == total:
                sid = SIGNATURES.id_of(text)
                counts[sid] += total
                if self._claim(sid):
                    found.append((first, text))
                continue
            self._varying.add(message)  # (a comm line per rank): not checked again
            cls = templated[shapes[0]]
            form = _message_form(message, cls) \
                if all(templated[shape] == cls for shape in shapes) else None
            forms.setdefault(form or (message,), []).append(message)
        for form, messages in forms.items():
            shapes = [shape for message in messages for shape in by_message[message]]
            if len(form) == 1 or not self._read_by_regex(
                    data, form, templated[shapes[0]], sum(block[s] for s in shapes), found):
                self._read_pieces(data, masked, shapes, templated, found)

    def _read_by_regex(self, data: bytes, form: tuple, cls: tuple, total: int,
                       found: list) -> bool:
        """Count a varying message's pieces in C: its form's regex finds every piece's
        field values, and equal values are counted at once.  False (nothing counted)
        where the matches are not exactly this block's `total` pieces of the form's
        templated shapes (a shape of it counted otherwise, a glued record)."""
        regex, order, prefix = form[0], form[1], form[3]
        firsts: dict[tuple, int] = {}
        if len(prefix) > len(INFO_MARKER) + 3:
            # The records sit where a literal is: bytes.find skips to them faster than
            # the regex engine scans, and only those few are matched.
            found_values, match, at = [], regex.match, data.find(prefix)
            while at >= 0:
                hit = match(data, at)
                if hit is not None:
                    found_values.append(hit.groups())
                    firsts.setdefault(found_values[-1], at)
                at = data.find(prefix, at + len(prefix))
            matches = Counter(found_values)
        else:
            matches = Counter(regex.findall(data))
        if sum(matches.values()) != total:
            return False
        valued, counts = self._valued, self._counts
        for groups, count in matches.items():
            if groups.__class__ is not tuple:
                groups = (groups,) if regex.groups else ()
            values = tuple(groups[j] for j in order)
            key = (form, values)
            sid = valued.get(key)
            if sid is None:
                sid = valued[key] = SIGNATURES.id_of_values(cls, values)
                if self._claim(sid):
                    at = firsts[groups] if groups in firsts else \
                        next(m for m in regex.finditer(data) if m.groups() == groups).start()
                    start = at + len(INFO_MARKER)
                    stop = data.find(INFO_MARKER, start)
                    found.append((start, data[start:stop if stop >= 0 else len(data)]))
            counts[sid] += count
        return True

    def _read_pieces(self, data: bytes, masked: bytes, shapes: list[bytes],
                     templated: dict[bytes, tuple], found: list) -> None:
        """Count templated shapes piece by piece, each value sliced where its shape
        puts it."""
        valued, counts = self._valued, self._counts
        for shape in shapes:
            cls, needle, size = templated[shape], INFO_MARKER + shape, len(shape)
            at = masked.find(needle)
            while at >= 0:
                start = at + len(INFO_MARKER)
                if start + size == len(masked) or masked.startswith(INFO_MARKER,
                                                                    start + size):
                    key = (shape, tuple([data[start + a:start + b] for a, b in cls[1]]))
                    sid = valued.get(key)
                    if sid is None:
                        sid = valued[key] = SIGNATURES.id_of_values(cls, key[1])
                        if self._claim(sid):
                            found.append((start, data[start:start + size]))
                    counts[sid] += 1
                at = masked.find(needle, start + 1)

    def _scan_messages(self, data: bytes, line_base: int, lines: int) -> None:
        """Count each record's message (a line's text after its first marker) in C.
        Slower than pieces where pieces repeat, but independent of line prefixes.
        Other lines are found by their number: with none (one INFO record per line,
        no WARN), tier 2 has nothing to read."""
        raw, known = self._raw, len(self._raw)
        infos = INFO_MESSAGE_RE.findall(data)
        raw.update(infos)
        warns = _own_line_warns(data) if WARN_MARKER in data else []
        raw.update((b"WARN", m, s or b"") for s, m in warns)
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
            self.tier2.extend(tier2_lines(data, line_base))

    def _count_warns(self, head: bytes, new: list, before: list[int]) -> list:
        """Count the block's WARN records; return the (WARN, message) keys new to it.

        WARN records sit inside INFO pieces (or the block's head), so they are
        counted from how often their pieces occurred (`before` holds the known WARN
        pieces' counts before this block): a block without one costs no search.
        """
        raw, warn_pieces = self._raw, self._warn_pieces
        for key in new:
            if WARN_MARKER in key:
                # A WARN on the piece's first line is glued after its INFO record and is
                # read with that message; only the lines after it hold WARN records.
                lines_at = key.find(b"\n") + 1
                warn_pieces[key] = [(b"WARN", m, s) for s, m in WARN_RE.findall(key, lines_at)] \
                    if lines_at else []
        warns: Counter = Counter()
        if WARN_MARKER in head:
            warns.update((b"WARN", m, s) for s, m in WARN_RE.findall(head))
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
                                 f"{decode(last[:120])}")
            return data[:start]
        return data + b"\n"

    def _tier2(self, data: bytes, line_base: int, regions: list[tuple[int, int]]) -> None:
        for line_no, (start, end) in _numbered(data, line_base, regions):
            self.tier2.extend(tier2_lines(data[start:end], line_no))

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
        for line_no, (at, key) in _numbered(data, line_base,
                                            sorted(found, key=lambda item: item[0])):
            self._example(key, data, at, line_no)

    def _fold(self) -> None:
        """Move piece counts to their signatures and forget the pieces (bounded memory)."""
        counts, id_of = self._counts, SIGNATURES.id_of
        for key, count in self._raw.items():
            counts[id_of(key)] += count
        self._raw.clear()
        for shape, count in self._shapes.items():
            if count:
                counts[self._class[shape]] += count
        self._shapes.clear()
        self._valued.clear()
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
                      self._warn_pieces, self._class):
            table.clear()
        return self
