"""A stand-in for the upstreams `efakit outdated` asks, on 127.0.0.1 only.

It serves the recorded answers under tests/fixtures/upstream (SOURCES.md there says
where each came from) at the paths the real services use, below one prefix per kind
(/pypi, /github, /dockerhub, /efa), so a test points EFAKIT_PYPI_URL and its siblings
here and no request leaves the machine.  `override` replaces an answer (a broken
body, a status), `redirect` answers a 302, and `stall` makes the server hold requests
without answering.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "upstream"
ENV = {"EFAKIT_PYPI_URL": "pypi", "EFAKIT_GITHUB_API": "github",
       "EFAKIT_DOCKERHUB_API": "dockerhub",
       "EFAKIT_EFA_RELEASE_NOTES_URL": "efa/efa-changelog.html"}


@dataclass
class StandIn:
    root: Path = FIXTURES
    override: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # path -> answer
    redirect: dict[str, str] = field(default_factory=dict)  # path -> a 302's Location
    stall: float = 0.0  # seconds to hold every request before answering
    asked: list[str] = field(default_factory=list)
    port: int = 0
    release: threading.Event = field(default_factory=threading.Event)

    def env(self) -> dict[str, str]:
        """The environment that points efakit at this server."""
        return {name: f"http://127.0.0.1:{self.port}/{path}" for name, path in ENV.items()}

    def answer(self, path: str) -> tuple[int, bytes]:
        if path in self.override:
            return self.override[path]
        relative = path.strip("/")
        for candidate in (self.root / f"{relative}.json", self.root / relative):
            resolved = candidate.resolve()
            if resolved.is_file() and resolved.is_relative_to(self.root):
                return 200, resolved.read_bytes()
        return 404, b'{"message": "Not Found"}'


def _handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = urllib.parse.urlsplit(self.path).path
            stand_in.asked.append(path)
            if stand_in.stall:
                stand_in.release.wait(stand_in.stall)
            status, body = stand_in.answer(path)
            with contextlib.suppress(OSError):  # the client may have given up
                if path in stand_in.redirect:
                    self.send_response(302)
                    self.send_header("Location", stand_in.redirect[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serving(stand_in: StandIn | None = None) -> Iterator[StandIn]:
    """Run the stand-in in a thread for the duration of the block."""
    stand_in = stand_in or StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stand_in))
    server.daemon_threads = True
    stand_in.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        stand_in.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
