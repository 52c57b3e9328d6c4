"""A tiny Profile API on 127.0.0.1 for tests that run the connector in a subprocess (where
requests_mock cannot reach): answers are chosen by path, like FakeProfileApi's."""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator, Optional
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from unit_tests.builders import Reply, ReplyLike, as_reply, profile_path


@dataclass(frozen=True)
class LocalRequest:
    path: str
    params: dict[str, list[str]]

    def param(self, name: str) -> Optional[str]:
        values = self.params.get(name)
        return values[0] if values else None


class LocalProfileServer:
    def __init__(self) -> None:
        self._handlers: dict[str, Callable[[LocalRequest], Reply]] = {}
        self._request_ids = itertools.count(1)
        self.seen: list[tuple[str, dict[str, str]]] = []  # (path with query, headers)
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def replies(self, stream: str, external_id: str, *replies: ReplyLike, space_id: str = "spa_unit") -> "LocalProfileServer":
        queue = [as_reply(reply) for reply in replies]
        position = itertools.count()
        self._handlers[profile_path(stream, external_id, space_id)] = lambda _: queue[min(next(position), len(queue) - 1)]
        return self

    def handler(self, stream: str, external_id: str, answer: Callable[["LocalRequest"], ReplyLike], space_id: str = "spa_unit") -> "LocalProfileServer":
        """`answer` runs on the server's request thread: requests of several workers really overlap."""
        self._handlers[profile_path(stream, external_id, space_id)] = lambda request: as_reply(answer(request))
        return self

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        with self._lock:
            self.seen.append((handler.path, dict(handler.headers)))
            answer = self._handlers.get(parts.path)
        reply = answer(LocalRequest(parts.path, parse_qs(parts.query))) if answer else Reply(418, {"error": {"message": f"unregistered {parts.path}"}})
        body = reply.body if isinstance(reply.body, bytes) else (reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode())
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Request-Id", f"local-{next(self._request_ids)}")
        for key, value in reply.headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    @contextmanager
    def running(self) -> Iterator["LocalProfileServer"]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else keep-alive requests stall on delayed ACKs

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                owner._answer(self)

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)
