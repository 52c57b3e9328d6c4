"""HTTP GETs on kept-alive connections, one connection per thread and host: the sync's only socket code.

Built on the standard library rather than requests: a page cost ~570 us of CPU through requests
(sessions, adapters, urllib3's pool, hooks), ~130 us through http.client, and less again with the
answer read straight off the socket (below). That CPU is the reader's, and the reader keeping
pace is what sets user_events' throughput (benchmarks/run.py). http.client still opens the
connections (proxy tunnel, TLS). What requests did
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
from typing import BinaryIO, Mapping, Optional, Union
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


class _OpenConnection:
    """A connected socket (proxy tunnel and TLS set up by http.client's connect) and its reader.

    Requests and answers go over the socket directly: http.client's response object, a new file
    object and an email-parser pass over the headers for every answer, was most of its CPU.
    """

    def __init__(self, connection: Connection):
        self._connection = connection
        self.sock = connection.sock
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self._connection.close()


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
        self._head_cache: dict[_Route, bytes] = {}

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

    def _exchange(self, connection: _OpenConnection, route: _Route, target: str) -> RawResponse:
        connection.sock.sendall(b"GET %s HTTP/1.1\r\n%s" % (target.encode("ascii"), self._head_lines(route)))
        status, headers, will_close = _read_head(connection.reader)
        body, will_close = _read_body(connection.reader, status, headers, will_close)
        if will_close:
            self._drop(route)
        return RawResponse(status, headers, body)

    def _head_lines(self, route: _Route) -> bytes:
        """The request's header lines after the request line: the same for every request of a route."""
        lines = self._head_cache.get(route)
        if lines is None:
            default_port = 443 if route.scheme == "https" else 80
            host = f"[{route.host}]" if ":" in route.host else route.host
            headers = {"Host": host if route.port == default_port else f"{host}:{route.port}", **self._headers}
            if route.proxy and route.scheme == "http" and route.proxy_authorization:
                headers["Proxy-Authorization"] = route.proxy_authorization
            lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1") + b"\r\n"
            self._head_cache[route] = lines
        return lines

    # --- connections ---------------------------------------------------------------------------

    def _connection(self, route: _Route) -> tuple[_OpenConnection, bool]:
        """This thread's open connection for `route`, or a new one; True when it is being reused."""
        pool = self._pool()
        connection = pool.get(route)
        if connection is not None:
            return connection, True
        connection = self._connect(route)
        pool[route] = connection
        return connection, False

    def _pool(self) -> dict[_Route, _OpenConnection]:
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

    def _connect(self, route: _Route) -> _OpenConnection:
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
        return _OpenConnection(connection)

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


# http.client's limits on a status or header line and on the number of headers.
MAX_LINE_BYTES = 65536
MAX_HEADERS = 100


def _read_head(reader: BinaryIO) -> tuple[int, dict[str, str], bool]:
    """Status, headers (lower-cased names) and whether the server will close, skipping 1xx answers."""
    while True:
        line = _read_line(reader)
        if not line:
            raise http.client.RemoteDisconnected("the server closed the connection without answering")
        version, _, rest = line.decode("latin-1").partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise http.client.BadStatusLine(line[:80].decode("latin-1", "replace").strip())
        headers: dict[str, str] = {}
        while True:
            line = _read_line(reader)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise http.client.IncompleteRead(b"")
            if len(headers) >= MAX_HEADERS:
                raise http.client.HTTPException(f"more than {MAX_HEADERS} headers")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(code)
        if status < 200 and status != 101:
            continue  # 100 Continue and the like: the real answer follows
        connection = headers.get("connection", "").lower()
        will_close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        return status, headers, will_close


def _read_body(reader: BinaryIO, status: int, headers: Mapping[str, str], will_close: bool) -> tuple[bytes, bool]:
    """The whole body: chunked, by Content-Length, or up to the end of the connection."""
    if status in (204, 304):
        return b"", will_close
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size_line = _read_line(reader)
            try:
                size = int(size_line.split(b";", 1)[0], 16)
            except ValueError:
                raise http.client.IncompleteRead(b"".join(chunks)) from None
            if size == 0:
                while _read_line(reader) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks), will_close
            chunks.append(_read_exactly(reader, size))
            _read_line(reader)  # the CRLF after the chunk
    length = headers.get("content-length")
    if length is not None:
        return _read_exactly(reader, int(length)), will_close
    return reader.read(), True


def _read_exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise http.client.IncompleteRead(data, size - len(data))
    return data


def _read_line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise http.client.LineTooLong("status or header line")
    return line


def _closed_while_idle(error: BaseException) -> bool:
    """The signs of a kept-alive connection the server had already closed when we sent."""
    return isinstance(error, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError))


def _describe(error: BaseException) -> str:
    if isinstance(error, socket.timeout):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return f"body cut short ({len(error.partial)} bytes of {len(error.partial) + (error.expected or 0)})"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
