"""BuildKit's plain output (`--progress=plain`) read as progress lines for the console.

What a person watching a build needs from it: each step once, as it starts; steps the
cache served said as "cached", in BuildKit's own order (its vertex numbers follow the
build graph), not in the scrambled order it resolves them in; and, while a step runs
with nothing new to say (a 211 s libfabric compile printed nothing), a heartbeat line
naming it, so a silent console is never mistaken for a hang.  The full output still
goes to the build log; this only decides what the console says.

Every method takes the time (`now`, monotonic seconds) from its caller, so recorded
lines with their arrival times replay exactly in tests, without Docker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STEP_RE = re.compile(r"^#(\d+) \[(?:([\w-]+)\s+)?(\d+)/(\d+)\] (.*)$")
VERTEX_RE = re.compile(r"^#(\d+) (.*)$")
ENDED = ("DONE", "ERROR", "CANCELED")
HEARTBEAT_S = 60.0
WIDTH = 120


@dataclass
class _Step:
    vertex: int
    label: str  # "[efa 2/3] RUN ...", runs of blanks folded, cut to a line
    state: str = "seen"  # seen (header only) -> cached | running -> ended
    began: float = 0.0


def step_label(match: re.Match[str]) -> str:
    """`[stage i/n] INSTRUCTION` with runs of blanks folded and cut to WIDTH."""
    stage = f"{match.group(2)} " if match.group(2) else ""
    words = " ".join(match.group(5).split())
    return f"[{stage}{match.group(3)}/{match.group(4)}] " + \
        (words if len(words) <= WIDTH else words[:WIDTH - 3] + "...")


class BuildSteps:
    """Feed each output line with `feed`, call `tick` when no line came for a while and
    `finish` at the end; each returns the progress lines to say, in order."""

    def __init__(self, heartbeat: float = HEARTBEAT_S) -> None:
        self.heartbeat = heartbeat
        self.steps: dict[str, _Step] = {}
        self.cached: list[_Step] = []  # served by the cache, not said yet
        self.said_at: float | None = None

    def feed(self, text: str, now: float) -> list[str]:
        text = text.rstrip("\n")
        header = STEP_RE.match(text)
        if header:
            said = self._resolve(now, but=header.group(1))
            if header.group(1) not in self.steps:  # BuildKit repeats a header on resume
                self.steps[header.group(1)] = _Step(int(header.group(1)), step_label(header))
            return said
        line = VERTEX_RE.match(text)
        step = self.steps.get(line.group(1)) if line else None
        if step is None:  # a blank line ends a vertex's group; so does another vertex's
            # line, and one outside the steps (exporting) says the cached ones before it
            return self._resolve(now) + (self._flush_cached(now) if line else [])
        said = self._resolve(now, but=line.group(1))  # type: ignore[union-attr]
        event = line.group(2)  # type: ignore[union-attr]
        if event == "CACHED" and step.state == "seen":
            step.state = "cached"
            self.cached.append(step)
        elif event.startswith(ENDED):
            if step.state == "seen":  # quick: no output between its header and DONE
                said += self._start(step, now)
            if step.state == "running":
                step.state = "ended"
        elif not event.startswith("sha256:") and step.state == "seen":
            said += self._start(step, now)  # its first output line
        return said

    def tick(self, now: float) -> list[str]:
        """The heartbeat: while a step runs and nothing was said for `heartbeat` seconds,
        one line naming the step that has run longest and for how long."""
        said = self._resolve(now)
        running = [s for s in self.steps.values() if s.state == "running"]
        if said or not running or self.said_at is None or now - self.said_at < self.heartbeat:
            return said
        oldest = min(running, key=lambda s: s.began)
        others = f" and {len(running) - 1} more" if len(running) > 1 else ""
        self.said_at = now
        return [f"still in {oldest.label} ({now - oldest.began:.0f}s in this step{others})"]

    def finish(self, now: float) -> list[str]:
        return self._resolve(now) + self._flush_cached(now)

    def _resolve(self, now: float, but: str | None = None) -> list[str]:
        """Steps whose header group ended without CACHED have started running."""
        said = []
        for vertex, step in self.steps.items():
            if step.state == "seen" and vertex != but:
                said += self._start(step, now)
        return said

    def _start(self, step: _Step, now: float) -> list[str]:
        step.state, step.began = "running", now
        return self._flush_cached(now) + self._say([step.label], now)

    def _flush_cached(self, now: float) -> list[str]:
        done = sorted(self.cached, key=lambda s: s.vertex)
        self.cached = []
        return self._say([_cached_label(s.label) for s in done], now)

    def _say(self, lines: list[str], now: float) -> list[str]:
        if lines:
            self.said_at = now
        return lines


def _cached_label(label: str) -> str:
    place, _, instruction = label.partition("] ")
    return f"{place}] cached {instruction}"
