"""HTTP GET with bounded time and size, for asking upstreams.

Every request has its own timeout and all of them share one deadline, so a scheduled
check ends in bounded time however an upstream behaves (no answer, a slow trickle,
an endless body).  Each answer is asked once per run.  A failure is an UpstreamError
in one line that names the URL; nothing here retries or falls back silently.

The answers are untrusted input, bounded here once for every reader: their size,
JSON nesting depth and the length of a number's digits (a 5000-digit number, or
`[` x 200000, was a traceback: attack-1 TB-2), and where a redirect may lead (a
302 to another host was followed 36 times: attack-1 SA-17).
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import math
import select
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from verify import __version__

MAX_BYTES = 64 << 20  # PyPI's torch answer (every release, every file) is ~10 MB
MAX_DEPTH = 32  # PyPI's, GitHub's and Docker Hub's answers nest 5 deep
MAX_DIGITS = 40  # a JSON number's digits; sizes and ids have under 20
MAX_REDIRECTS = 3  # PyPI redirects a name to its normalised form: one hop
_BLOCK = 1 << 16


class UpstreamError(RuntimeError):
    """An upstream that could not be asked, or whose answer cannot be read."""


class _DeadlinePassed(Exception):
    """The shared deadline passed mid-request (turned into an UpstreamError naming the URL)."""


@dataclass(frozen=True)
class _Clock:
    """The per-recv timeout and the shared end of a Client.  Every socket operation
    waits at most min(timeout, time left), so the overall deadline holds whatever the
    server does (a body, a header or a handshake dripped one byte at a time got past
    a deadline checked only between 64 KiB reads: attack-2 H-1)."""

    timeout: float
    end: float

    def wait(self) -> float:
        """How long the next socket operation may wait; _DeadlinePassed when none."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed
        return min(self.timeout, left)


class _Reader(io.RawIOBase):
    """The socket's bytes, each recv bounded by the clock (http.client's own
    makefile() would wait the socket timeout per recv with no end overall)."""

    def __init__(self, sock: socket.socket, clock: _Clock) -> None:
        super().__init__()
        # the socket's own raw reader holds a reference, so urllib's early close of
        # the connection's socket leaves it open for the body, as with makefile()
        self._sock, self._raw, self._clock = sock, sock.makefile("rb", buffering=0), clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(self._clock.wait())
        try:
            return self._raw.readinto(buffer)
        except TimeoutError:
            self._clock.wait()  # _DeadlinePassed when it was the deadline that ended it
            raise

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Response(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, clock: _Clock, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp = io.BufferedReader(_Reader(sock, clock))


class _Connection(http.client.HTTPConnection):
    def __init__(self, *args: Any, clock: _Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.response_class = functools.partial(_Response, clock=clock)

    def connect(self) -> None:
        self.timeout = self.clock.wait()
        super().connect()


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, clock: _Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.response_class = functools.partial(_Response, clock=clock)

    def connect(self) -> None:
        """TCP (and a proxy's CONNECT) bounded as above, then the TLS handshake step
        by step, each wait bounded by the clock."""
        self.timeout = self.clock.wait()
        http.client.HTTPConnection.connect(self)
        sock = self._context.wrap_socket(self.sock, do_handshake_on_connect=False,
                                         server_hostname=self._tunnel_host or self.host)
        sock.settimeout(0)
        while True:
            try:
                sock.do_handshake()
                break
            except ssl.SSLWantReadError:
                ready = select.select([sock], [], [], self.clock.wait())[0]
            except ssl.SSLWantWriteError:
                ready = select.select([], [sock], [], self.clock.wait())[1]
            if not ready:
                self.clock.wait()
                raise TimeoutError("TLS handshake timed out")
        self.sock = sock


class _Handlers(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """urllib's handlers with connections whose every wait is bounded by the clock."""

    def __init__(self, clock: _Clock) -> None:
        urllib.request.HTTPHandler.__init__(self)
        urllib.request.HTTPSHandler.__init__(self)
        self.clock = clock

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(functools.partial(_Connection, clock=self.clock), req)

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(functools.partial(_TLSConnection, clock=self.clock), req,
                            context=self._context)


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    """Redirects within the scheme, host and port asked (PyPI's name normalisation),
    at most MAX_REDIRECTS of them; any other is refused, so an answer can never lead
    efakit to plain text, or to a host the endpoint rule did not allow."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, PLR0913
        asked, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if _origin(new) != _origin(asked):
            raise UpstreamError(f"{req.full_url}: HTTP {code} redirect to another origin "
                                f"({new.scheme}://{new.netloc}), not followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _origin(url: urllib.parse.SplitResult) -> tuple[str, str | None, int | None]:
    """Scheme, host and port, the port spelled out (`https://h` is `https://h:443`)."""
    try:
        port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    except ValueError:  # a port that is no number
        port = -1
    return url.scheme, url.hostname, port


def _number(text: str) -> int | float:
    """A JSON number of at most MAX_DIGITS characters that is finite (int() of 5000
    digits raises, float() of 1e400 is inf)."""
    if len(text) > MAX_DIGITS:
        raise ValueError(f"a number of {len(text)} characters")
    value = float(text) if any(c in text for c in ".eE") else int(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _constant(word: str) -> None:
    raise ValueError(f"{word} is not JSON")


def _depth(doc: Any) -> int:
    """How deep `doc` nests (iterative: the walk itself never recurses)."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                todo.extend((child, depth + 1) for child in
                            (node.values() if isinstance(node, dict) else node))
    return deepest


class Client:
    """GETs against one shared deadline; answers cached by URL."""

    def __init__(self, timeout: float, deadline: float) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.end = time.monotonic() + deadline
        self._cache: dict[str, bytes | UpstreamError] = {}
        # Proxies from the environment are honoured (no_proxy included); redirects only
        # within the origin asked.
        self._opener = urllib.request.build_opener(
            _SameOrigin, _Handlers(_Clock(timeout, self.end)))

    def _remaining(self, url: str) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise UpstreamError(f"{url}: not asked: the overall deadline of "
                                f"{self.deadline:g} s had passed")
        return left

    def _fetch(self, url: str, accept: str) -> bytes:
        request = urllib.request.Request(url, headers={
            "Accept": accept, "User-Agent": f"efakit/{__version__} (efakit outdated)"})
        try:
            with self._opener.open(request, timeout=min(self.timeout,
                                                         self._remaining(url))) as resp:
                chunks, size = [], 0
                while block := resp.read1(_BLOCK):
                    size += len(block)
                    if size > MAX_BYTES:
                        raise UpstreamError(f"{url}: answer larger than {MAX_BYTES >> 20} MB")
                    chunks.append(block)
                    if time.monotonic() > self.end:
                        raise _DeadlinePassed
                return b"".join(chunks)
        except _DeadlinePassed:
            raise UpstreamError(f"{url}: answer still arriving at the overall "
                                f"deadline of {self.deadline:g} s") from None
        except urllib.error.HTTPError as exc:
            if exc.code in (301, 302, 303, 307, 308):  # past MAX_REDIRECTS
                raise UpstreamError(f"{url}: more than {MAX_REDIRECTS} redirects") from None
            raise UpstreamError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except TimeoutError:
            raise UpstreamError(f"{url}: no answer within {self.timeout:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise UpstreamError(f"{url}: no answer within {self.timeout:g} s") from None
            raise UpstreamError(f"{url}: cannot connect: {reason}") from None
        except (OSError, ValueError) as exc:  # a reset connection, a broken HTTP answer
            raise UpstreamError(f"{url}: {type(exc).__name__}: {exc}") from None

    def get(self, url: str, accept: str = "*/*") -> bytes:
        """The body at `url` (asked once per run); UpstreamError when it cannot be had."""
        if url not in self._cache:
            try:
                self._cache[url] = self._fetch(url, accept)
            except UpstreamError as exc:
                self._cache[url] = exc
        answer = self._cache[url]
        if isinstance(answer, UpstreamError):
            raise answer
        return answer

    def get_json(self, url: str) -> Any:
        """The JSON document at `url`; a body that is not JSON, nests deeper than
        MAX_DEPTH or holds a number longer than MAX_DIGITS is an UpstreamError."""
        body = self.get(url, "application/json")
        too_deep = UpstreamError(f"{url}: answer nests deeper than {MAX_DEPTH} levels")
        try:
            doc = json.loads(body, parse_int=_number, parse_float=_number,
                             parse_constant=_constant)
        except RecursionError:
            raise too_deep from None
        except (UnicodeDecodeError, ValueError) as exc:
            why = " ".join(str(exc).split())[:200]
            raise UpstreamError(f"{url}: answer is not JSON efakit reads ({why})") from None
        if _depth(doc) > MAX_DEPTH:
            raise too_deep
        return doc

    def get_text(self, url: str) -> str:
        return self.get(url, "text/html, text/plain").decode("utf-8", errors="replace")
