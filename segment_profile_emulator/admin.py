"""The admin routes, under /_emulator/ (no auth, not counted): stats, the request log, the clock,
ground truth, lookup ids, the profiles that vanish, the runtime knobs, messages delivered to users,
shutdown.

POST /_emulator/messages delivers new messages to users while the emulator runs, as a real space
receives them (messages.py): {"kind": "track"|"identify"|"group", "users": [lookup ids]} or
{"kind": ..., "fraction": 0.1} (round(fraction * users) users, evenly spread: user
i * users // n), and "count" (messages per user, default 1). They arrive at the clock's now, which
then moves 1 ms on, and show at once on every route they change and in the ground truth; a stats
reset keeps them (they are data). It answers {"kind", "arrival", "now", "messages" (how many),
"users": [{"lookup_id", "message_ids", "anonymous_ids" (identify), "linked_accounts" (group: the
account's lookup id, null when the user had every account)}]}; a bad field answers 400
validation_error naming it and its value."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from .answers import error_body
from .formats import format_timestamp, to_json_bytes
from .ground_truth import ground_truth_chunks
from .routes import parse_query

if TYPE_CHECKING:
    from .server import EmulatorServer

ADMIN_PREFIX = "/_emulator/"


class AdminRoutes:
    """The admin side of ProfileApiHandler, which it answers with (`_send`, `_send_chunked`)."""

    server: EmulatorServer

    def _serve_admin(self, method: str, path: str, query_string: str, request_body: bytes) -> None:
        server = self.server
        route = (method, path.removeprefix(ADMIN_PREFIX))
        query = parse_query(query_string)
        try:
            if route == ("GET", "stats"):
                answer = server.stats_snapshot()
            elif route == ("POST", "stats/reset"):
                server.reset_stats()
                answer = server.stats_snapshot()
            elif route == ("GET", "requests"):
                answer = server.stats.requests()
            elif route == ("GET", "clock"):
                answer = {"now": format_timestamp(server.clock.now_ms)}
            elif route == ("POST", "clock"):
                answer = {"now": format_timestamp(server.clock.advance(float(query.get("advance_seconds", "0"))))}
            elif route == ("GET", "ground-truth"):
                self._send_chunked(ground_truth_chunks(server.dataset, server.clock.now_ms))
                return
            elif route == ("GET", "lookup-ids"):
                # what a connector config lists, without the ground truth's events (a space of
                # 100,000 users has millions)
                answer = {
                    "users": server.dataset.user_lookup_ids,
                    "accounts": [account.lookup_id for account in server.dataset.accounts],
                }
            elif route == ("GET", "vanishing-profiles"):
                answer = server.vanishing.describe()
            elif route == ("GET", "faults"):
                answer = server.settings.runtime_knobs()
            elif route == ("POST", "faults"):
                server.update_knobs(**json.loads(request_body or b"{}"))
                answer = server.settings.runtime_knobs()
            elif route == ("POST", "messages"):
                answer = server.deliver_messages(json.loads(request_body or b"{}"))
            elif route == ("POST", "shutdown"):
                # Answered before the shutdown starts: once serve_forever returns, the process may
                # exit before this thread has written anything (the caller saw RemoteDisconnected).
                self.close_connection = True
                self._send(200, to_json_bytes({"shutting_down": True}))
                threading.Thread(target=server.shutdown, daemon=True).start()
                return
            else:
                self._send(404, error_body("not_found", f"No admin route {method} {path}."))
                return
        except (ValueError, TypeError) as error:
            self._send(400, error_body("validation_error", str(error)))
            return
        self._send(200, to_json_bytes(answer))
