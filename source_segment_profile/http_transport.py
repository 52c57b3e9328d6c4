"""HTTP GETs on kept-alive connections, one connection per thread and host: the sync's only socket code.

Built on the standard library's http.client rather than requests: a page costs ~130 us of CPU this
way against ~570 us through requests (sessions, adapters, urllib3's pool, hooks), and that CPU is
spent holding the interpreter lock the whole sync shares (benchmarks/run.py). What requests did
for us and this module does itself: proxies from the environment, TLS verification against a CA
bundle, separate connect and read timeouts, and a transparent retry of a kept-alive connection
that the server closed while idle. Redirects are never followed (the API does not redirect, and
following one would send the token elsewhere).
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
import threading
import urllib.request
from dataclasses import dataclass
from typing import Mapping, Optional, Union
from urllib.parse import unquote, urlsplit

import certifi

Connection = Union[http.client.HTTPConnection, http.client.HTTPSConnection]


@dataclass(frozen=True)
class RawResponse:
    """A complete answer: status, headers (names lower-cased) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class TransportError(Exception):
    """No complete answer: refused, reset, timed out or cut short. A later attempt may succeed."""


@dataclass(frozen=True)
class _Route:
    """Where a URL's requests go: straight to the host, or through a proxy (tunnelled for https)."""

    scheme: str
    host: str
    port: int
    proxy: Optional[tuple[str, str, int]]  # (scheme, host, port)
    proxy_authorization: Optional[str] = None


class HttpTransport:
    """GETs with `headers` on every request; safe to share between threads.

    Each thread keeps its own connection per host, so workers never wait on each other for a
    socket; connections inherited across a fork are never reused (they belong to the parent).
    """

    def __init__(self, headers: Mapping[str, str], connect_timeout: float, read_timeout: float):
        self._headers = dict(headers)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._local = threading.local()
        self._tls: Optional[ssl.SSLContext] = None
        self._tls_lock = threading.Lock()
        # Resolved once: looking up proxies per request is measurable CPU.
        self._proxies = urllib.request.getproxies()
        self._routes: dict[tuple[str, str, Optional[int]], _Route] = {}

    def get(self, url: str) -> RawResponse:
        parts = urlsplit(url)
        route_key = (parts.scheme, parts.hostname or "", parts.port)
        route = self._routes.get(route_key) or self._routes.setdefault(route_key, self._route(*route_key))
        target = url if route.proxy and route.scheme == "http" else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection, reused = self._connection(route)
        try:
            return self._exchange(connection, route, target)
        except (OSError, http.client.HTTPException) as error:
            self._drop(route)
            if not (reused and _closed_while_idle(error)):
                raise TransportError(_describe(error)) from None
        # The server closed the kept-alive connection between two requests: one fresh attempt,
        # not counted as a failure (nothing reached the API).
        connection, _ = self._connection(route)
        try:
            return self._exchange(connection, route, target)
        except (OSError, http.client.HTTPException) as error:
            self._drop(route)
            raise TransportError(_describe(error)) from None

    def _exchange(self, connection: Connection, route: _Route, target: str) -> RawResponse:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        for name, value in self._headers.items():
            connection.putheader(name, value)
        if route.proxy and route.scheme == "http" and route.proxy_authorization:
            connection.putheader("Proxy-Authorization", route.proxy_authorization)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()  # IncompleteRead if the body is cut short of its length
        headers = {name.lower(): value for name, value in response.getheaders()}
        if response.will_close:
            self._drop(route)
        return RawResponse(response.status, headers, body)

    # --- connections ---------------------------------------------------------------------------

    def _connection(self, route: _Route) -> tuple[Connection, bool]:
        """This thread's open connection for `route`, or a new one; True when it is being reused."""
        pool = self._pool()
        connection = pool.get(route)
        if connection is not None:
            return connection, True
        connection = self._connect(route)
        pool[route] = connection
        return connection, False

    def _pool(self) -> dict[_Route, Connection]:
        pid = os.getpid()
        if getattr(self._local, "pid", None) != pid:
            # A new thread, or this thread's copy in a forked child: the sockets are not ours.
            self._local.pid = pid
            self._local.connections = {}
        return self._local.connections

    def _drop(self, route: _Route) -> None:
        connection = self._pool().pop(route, None)
        if connection is not None:
            connection.close()

    def _connect(self, route: _Route) -> Connection:
        host, port = (route.proxy[1], route.proxy[2]) if route.proxy else (route.host, route.port)
        connection: Connection
        if route.scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=self._connect_timeout, context=self._tls_context())
            if route.proxy:
                tunnel_headers = {"Proxy-Authorization": route.proxy_authorization} if route.proxy_authorization else None
                connection.set_tunnel(route.host, route.port, headers=tunnel_headers)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self._connect_timeout)
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise TransportError(_describe(error)) from None
        # The connect timeout bounds the handshake; each read after it waits up to the read timeout.
        connection.sock.settimeout(self._read_timeout)
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _route(self, scheme: str, host: str, port: Optional[int]) -> _Route:
        default_port = 443 if scheme == "https" else 80
        proxy_url = None if urllib.request.proxy_bypass(host) else self._proxies.get(scheme)
        if not proxy_url:
            return _Route(scheme, host, port or default_port, None)
        proxy_parts = urlsplit(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
        authorization = None
        if proxy_parts.username:
            credentials = f"{unquote(proxy_parts.username)}:{unquote(proxy_parts.password or '')}"
            authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
        proxy = (proxy_parts.scheme, proxy_parts.hostname or "", proxy_parts.port or 80)
        return _Route(scheme, host, port or default_port, proxy, authorization)

    def _tls_context(self) -> ssl.SSLContext:
        with self._tls_lock:
            if self._tls is None:
                # The same CA bundle requests would use: the environment's, else certifi's.
                bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
                self._tls = ssl.create_default_context(cafile=bundle)
            return self._tls


def _closed_while_idle(error: BaseException) -> bool:
    """The signs of a kept-alive connection the server had already closed when we sent."""
    return isinstance(error, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError))


def _describe(error: BaseException) -> str:
    if isinstance(error, socket.timeout):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return f"body cut short ({len(error.partial)} bytes of {len(error.partial) + (error.expected or 0)})"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
