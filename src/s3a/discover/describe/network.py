"""The network side of the describe step: the gate every HTTP attempt passes (concurrency and pauses
after time-outs) and the proxy the environment names for the endpoint."""

from __future__ import annotations

import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager


class _Stop(Exception):
    """Raised inside a worker when another worker has failed."""


class _Gate:
    """HTTP attempts in flight at once for one endpoint, and a pause before the next one.

    Every attempt takes a slot, retries included (:meth:`_OpenAIRunner._send`). Starts at
    ``max_concurrency``; after the endpoint's first time-out it falls to 1 for the rest of the run, and
    every time-out pauses all requests (a single-slot server is still generating the
    abandoned answer; sending more only queues them behind it until they time out too).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active = 0
        self._resume_at = 0.0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self, stop: threading.Event) -> Iterator[None]:
        with self._cond:
            while self._active >= self.limit or time.monotonic() < self._resume_at:
                if stop.is_set():
                    raise _Stop()
                wait = self._resume_at - time.monotonic()
                self._cond.wait(min(0.05, wait) if wait > 0 else 0.05)
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def after_timeout(self, delay: float) -> int | None:
        """Pause all requests for ``delay`` seconds; lower the limit to 1. Returns the old limit once."""
        with self._cond:
            self._resume_at = max(self._resume_at, time.monotonic() + delay)
            if self.limit > 1:
                old, self.limit = self.limit, 1
                return old
            return None


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, as curl, pip and the HTTP client itself read it.

    ``HTTPS_PROXY``/``HTTP_PROXY`` by the URL's scheme (either case), else ``ALL_PROXY``; ``None``
    when there is none or ``NO_PROXY`` lists the host (``*`` = every host). Clusters that reach the
    internet only through a proxy need this: the describe step's HTTP client has a transport of its
    own, which the client's own proxy handling skips.
    """
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if parts.hostname and urllib.request.proxy_bypass_environment(parts.hostname, proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all") or None


def _hide_userinfo(url: str) -> str:
    """``url`` without a ``user:password@`` part (a proxy URL may carry credentials)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
