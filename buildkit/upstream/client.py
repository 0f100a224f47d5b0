"""HTTP GET with bounded time and size, for asking upstreams.

Every request has its own timeout and all of them share one deadline, so a scheduled
check ends in bounded time however an upstream behaves (no answer, a slow trickle,
an endless body).  Each answer is asked once per run.  A failure is an UpstreamError
in one line that names the URL; nothing here retries or falls back silently.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from verify import __version__

MAX_BYTES = 64 << 20  # PyPI's torch answer (every release, every file) is ~10 MB
_BLOCK = 1 << 16


class UpstreamError(RuntimeError):
    """An upstream that could not be asked, or whose answer cannot be read."""


class Client:
    """GETs against one shared deadline; answers cached by URL."""

    def __init__(self, timeout: float, deadline: float) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.end = time.monotonic() + deadline
        self._cache: dict[str, bytes | UpstreamError] = {}
        # Proxies from the environment are honoured (no_proxy included); redirects are
        # followed as urllib does (PyPI redirects a name to its normalised form).
        self._opener = urllib.request.build_opener()

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
                while block := resp.read(_BLOCK):
                    size += len(block)
                    if size > MAX_BYTES:
                        raise UpstreamError(f"{url}: answer larger than {MAX_BYTES >> 20} MB")
                    chunks.append(block)
                    if time.monotonic() > self.end:
                        raise UpstreamError(f"{url}: answer still arriving at the overall "
                                            f"deadline of {self.deadline:g} s")
                return b"".join(chunks)
        except urllib.error.HTTPError as exc:
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
        """The JSON document at `url`; a body that is not JSON is an UpstreamError."""
        body = self.get(url, "application/json")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise UpstreamError(f"{url}: answer is not JSON ({exc})") from None

    def get_text(self, url: str) -> str:
        return self.get(url, "text/html, text/plain").decode("utf-8", errors="replace")
