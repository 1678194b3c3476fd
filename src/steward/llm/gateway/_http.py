"""The HTTP transports of the remote providers: one pooled aiohttp session or httpx client per provider.

aiohttp, httpx and yarl are imported on first use (a provider's first request or its construction),
not at import time: ``import steward.llm.gateway`` stays cheap for callers that never reach a
remote provider (offline RAG answers, the CLI, tests with the local provider).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING

from steward.llm.gateway._errors import ProviderError, UpstreamRejected

if TYPE_CHECKING:
    import aiohttp
    import httpx
    from yarl import URL

__all__ = ["AioHTTP", "httpx_client", "pool_exhausted", "status_error", "transport_error"]

JSON_HEADERS = {"content-type": "application/json"}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def status_error(name: str, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | UpstreamRejected:
    """The error of an HTTP status >= 400: retryable (408, 409, 429, 5xx, the router falls back) or a rejection."""
    text = body[:300].decode("utf-8", "replace")
    if status in (408, 409, 429) or status >= 500:
        return ProviderError(
            f"provider {name!r} answered {status}: {text}",
            status=status,
            retryable=True,
            retry_after=_retry_after(headers),
            code="llm.provider_rate_limited" if status == 429 else "llm.provider",
        )
    return UpstreamRejected(f"provider {name!r} rejected the request ({status}): {text}", details={"upstream_status": status})


def pool_exhausted(name: str) -> ProviderError:
    """The error when the gateway's own connection pool to a provider is full."""
    # Our own connection pool is full: the gateway is overloaded, the provider is not at fault.
    return ProviderError(f"no free connection to provider {name!r} (gateway overloaded)", code="llm.pool_exhausted")


def transport_error(name: str, exc: Exception) -> ProviderError:
    """The :class:`ProviderError` of an httpx transport exception (timeout, pool full, unreachable)."""
    import httpx

    if isinstance(exc, httpx.PoolTimeout):
        return pool_exhausted(name)
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(f"provider {name!r} timed out ({type(exc).__name__})", code="llm.provider_timeout")
    return ProviderError(f"provider {name!r} unreachable: {type(exc).__name__}: {exc}", code="llm.provider_unreachable")


def httpx_client(base_url: str, timeout_s: float, headers: dict[str, str]) -> httpx.AsyncClient:
    """One pooled client per provider, reused by every request (keep-alive)."""
    import httpx

    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        timeout=httpx.Timeout(timeout_s),
        # A bounded pool: httpcore scans its connections on every request, so a huge pool costs CPU under load.
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30.0),
        headers={**JSON_HEADERS, **headers},
    )


class AioHTTP:
    """One aiohttp session per provider: created lazily inside the running event loop, keep-alive, sized for concurrency.

    aiohttp costs about a third of httpx's CPU per request and its pool does not slow down as in-flight
    connections grow, which is what the gateway's added latency is made of under load.

    Timeouts mirror ``httpx.Timeout(timeout_s)``: connecting (including waiting for a pooled connection)
    and every read (so also the gap between two streamed chunks) are each bounded by ``timeout_s``.

    Args:
        name: Provider name (for error messages).
        base_url: Endpoint root.
        timeout_s: Connect / read timeout.
        headers: Sent with every request (JSON content type added).
        limit: Most connections open at once.

    Its methods import aiohttp and yarl themselves (a dictionary lookup once loaded): see the module docstring.
    """

    def __init__(self, name: str, base_url: str, timeout_s: float, headers: dict[str, str], *, limit: int = 512) -> None:
        self.name = name
        self.base = base_url.rstrip("/") + "/"
        import aiohttp

        self.headers = {**JSON_HEADERS, **headers}
        self.limit = limit
        self.timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s)
        self.inflight = 0
        self._urls: dict[str, URL] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def url(self, path: str) -> URL:
        """The absolute URL of ``path`` (parsed once)."""
        url = self._urls.get(path)
        if url is None:
            from yarl import URL

            url = self._urls[path] = URL(self.base + path)
        return url

    def session(self) -> aiohttp.ClientSession:
        """The session of the running loop (a new one if the loop changed, e.g. across ``asyncio.run`` calls)."""
        import aiohttp

        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._loop is not loop:
            if session is not None:
                _abandon(session)
            connector = aiohttp.TCPConnector(limit=self.limit, keepalive_timeout=30.0, ttl_dns_cache=300)
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                headers=self.headers,
                cookie_jar=aiohttp.DummyCookieJar(),  # an API client: no cookies to parse or send
            )
            self._session, self._loop = session, loop
        return session

    def error(self, exc: BaseException, pool_full: bool) -> ProviderError:
        """The :class:`ProviderError` of an aiohttp / timeout exception (same codes as with httpx)."""
        import aiohttp

        if isinstance(exc, aiohttp.ConnectionTimeoutError) and pool_full:
            return pool_exhausted(self.name)
        if isinstance(exc, TimeoutError):  # ServerTimeoutError, ConnectionTimeoutError, SocketTimeoutError are TimeoutErrors too
            return ProviderError(f"provider {self.name!r} timed out ({type(exc).__name__})", code="llm.provider_timeout")
        return ProviderError(f"provider {self.name!r} unreachable: {type(exc).__name__}: {exc}", code="llm.provider_unreachable")

    async def post(self, path: str, payload: bytes) -> bytes:
        """POST ``payload``; the body of a 2xx/3xx answer, else the status as a provider error."""
        import aiohttp

        pool_full = self.inflight >= self.limit
        self.inflight += 1
        try:
            async with self.session().post(self.url(path), data=payload) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise status_error(self.name, resp.status, resp.headers, body)
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.error(exc, pool_full) from None
        finally:
            self.inflight -= 1

    async def lines(self, path: str, payload: bytes) -> AsyncGenerator[bytes, None]:
        """POST ``payload`` and yield the answer's lines (server-sent events); closing the iterator frees the connection."""
        import aiohttp

        pool_full = self.inflight >= self.limit
        self.inflight += 1
        try:
            async with self.session().post(self.url(path), data=payload) as resp:
                if resp.status >= 400:
                    raise status_error(self.name, resp.status, resp.headers, await resp.read())
                async for line in resp.content:
                    yield line
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.error(exc, pool_full) from None
        finally:
            self.inflight -= 1

    async def aclose(self) -> None:
        """Close the session (only from the loop that created it; another loop's session died with its loop)."""
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            await session.close()
        else:
            _abandon(session)

    def __del__(self) -> None:
        # A gateway dropped without aclose() (e.g. one per agent run): close quietly, as httpx did.
        session = getattr(self, "_session", None)
        if session is not None and not session.closed:
            _abandon(session)


def _abandon(session: aiohttp.ClientSession) -> None:
    """Drop a session without its 'Unclosed client session / connector' warnings at garbage collection.

    Its sockets are closed now when its loop still runs; otherwise they went with their loop.
    """
    connector = session.connector
    session.detach()
    # The synchronous part of connector.close(), so no awaitable is left un-awaited (no such public API in aiohttp 3.x).
    close = getattr(connector, "_close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
