"""Command line of the emulator: `segment-profile-emulator --users 1000 --port 8080`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

from .dataset import build_dataset
from .formats import to_json_bytes
from .ground_truth import ground_truth_chunks
from .server import EmulatorServer
from .settings import MAX_PAGE_LIMIT, RETRY_AFTER_MODES, EmulatorSettings

DEFAULTS = EmulatorSettings()


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segment-profile-emulator",
        description="Serve the Segment Profile API from a deterministic synthetic space.",
    )
    parser.add_argument("--host", default=DEFAULTS.host)
    parser.add_argument("--port", type=int, default=DEFAULTS.port, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, help='write {"url", "pid"} here once listening')
    parser.add_argument("--space-id", default=DEFAULTS.space_id)
    parser.add_argument("--token", default=DEFAULTS.token, help="the Basic-auth username clients must send")

    data = parser.add_argument_group("data")
    data.add_argument("--users", type=int, default=100)
    data.add_argument("--accounts", type=int, default=10)
    data.add_argument("--seed", type=int, default=42)
    data.add_argument("--now", help="the clock, ISO 8601 (default: the current second)")
    data.add_argument("--ground-truth", type=Path, help="write what the API serves at startup to this JSON file")
    data.add_argument(
        "--lone-surrogate-trait", action="store_true",
        help='every 7th user has a trait "nickname" written "\\ud83d rocket" on the wire (a lone UTF-16 surrogate)',
    )
    data.add_argument("--events-per-user", type=int, metavar="N",
                      help="every user has exactly N events in the 14-day window, evenly spread")
    data.add_argument("--heavy-user-events", type=int, metavar="N", help="user 0 has exactly N events in the window")
    data.add_argument(
        "--late-events", default=DEFAULTS.late_events, metavar="HOURS[,HOURS...]",
        help="for each lateness, every 5th user has an event per hour that arrives HOURS after its timestamp",
    )
    data.add_argument("--future-events", action="store_true",
                      help="every 10th user has an event stamped a year after it arrived")

    pacing = parser.add_argument_group("latency and rate limit")
    pacing.add_argument("--latency-ms", type=float, default=DEFAULTS.latency_ms, help="mean added latency")
    pacing.add_argument(
        "--latency-spread", type=_probability, default=DEFAULTS.latency_spread,
        help="latency is uniform in mean*(1 +- spread)",
    )
    pacing.add_argument("--rate-limit", type=float, default=DEFAULTS.rate_limit, help="requests/s per space; 0 = off")
    pacing.add_argument("--rate-burst", type=float, help="token-bucket size (default: the rate)")
    pacing.add_argument(
        "--rate-limit-schedule", default=DEFAULTS.rate_limit_schedule, metavar="SECONDS:RATE[,SECONDS:RATE...]",
        help="the space's other callers: the limit becomes RATE SECONDS after the first request (or stats reset)",
    )
    pacing.add_argument("--retry-after", choices=RETRY_AFTER_MODES, default=DEFAULTS.retry_after,
                        help="what a 429 carries")
    pacing.add_argument(
        "--retry-after-value", default=DEFAULTS.retry_after_value, metavar="TEXT",
        help='every 429 carries exactly "Retry-After: TEXT", sent as is and overriding --retry-after: '
        '40, 1e9, inf, or a date such as "Fri, 31 Dec 9999 23:59:59 GMT"; the stats count a number or '
        "a date as a wait (at most a year), anything else as none",
    )

    api = parser.add_argument_group("API behaviour")
    api.add_argument("--gzip", action="store_true", help="gzip answers when Accept-Encoding allows it")
    api.add_argument(
        "--max-list-limit", type=int, default=DEFAULTS.max_list_limit, metavar="N",
        help=f"largest limit of events, external_ids, links and the profile listing (default {MAX_PAGE_LIMIT}; "
        "Segment docs say 100); traits keep 200",
    )
    api.add_argument("--no-list-method", action="store_true",
                     help="GET .../collections/users/profiles answers 404 (listing not available)")
    api.add_argument(
        "--computed-traits-epoch", type=int, default=DEFAULTS.computed_traits_epoch, metavar="N",
        help="another N recomputes every computed trait (new values, updated_at at the clock) without moving metadata",
    )

    faults = parser.add_argument_group("faults (probabilities per request)")
    faults.add_argument("--fault-429", type=_probability, default=0.0, help="extra 429s (a storm)")
    faults.add_argument("--fault-5xx", type=_probability, default=0.0, help="500/502/503 with an error body")
    faults.add_argument("--fault-reset", type=_probability, default=0.0, help="close (FIN) without any response")
    faults.add_argument("--fault-truncate", type=_probability, default=0.0,
                        help="full Content-Length, half the body, then close (FIN)")
    faults.add_argument(
        "--fault-reset-mid-body", type=_probability, default=0.0,
        help="full Content-Length, half the body, then RST: the client's read fails with ECONNRESET",
    )
    faults.add_argument(
        "--fault-empty-has-more", type=_probability, default=0.0, metavar="P",
        help="an answer with a cursor (traits, events, external_ids, links) becomes a page without items whose "
        "cursor says has_more, its next serving the page it replaced (following it loses nothing; an answer to "
        "that next is never emptied)",
    )
    faults.add_argument("--empty-has-more-once", action="store_true",
                        help="empty each profile's route at most once (since startup or a stats reset)")
    faults.add_argument("--fault-slow", type=_probability, default=0.0, help="wait --slow-seconds before answering")
    faults.add_argument("--slow-seconds", type=float, default=DEFAULTS.slow_seconds)
    faults.add_argument("--fault-seed", type=int, default=DEFAULTS.fault_seed, help="seed of the fault draws")

    vanishing = parser.add_argument_group(
        "profiles that vanish (404 not_found under every id; GET /_emulator/vanishing-profiles names them)"
    )
    vanishing.add_argument("--vanish-users", type=int, default=DEFAULTS.vanish_users, metavar="N",
                           help="the first N users of the ground truth vanish (more than there are: all)")
    vanishing.add_argument("--vanish-accounts", type=int, default=DEFAULTS.vanish_accounts, metavar="N",
                           help="the first N accounts of the ground truth vanish (more than there are: all)")
    vanishing.add_argument(
        "--vanish-after-requests", type=int, default=DEFAULTS.vanish_after_requests, metavar="K",
        help="they vanish once K profile requests have arrived (since startup or a stats reset); 0: from the start",
    )
    return parser


def _write_atomically(path: Path, chunks: Iterable[bytes]) -> None:
    """Readers polling for the file never see it half written."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as file:
        file.writelines(chunks)
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = EmulatorSettings(
        **{name: getattr(args, name) for name in vars(EmulatorSettings()) if hasattr(args, name)}
    )
    try:
        settings.validate()
    except ValueError as error:
        sys.exit(f"segment-profile-emulator: {error}")

    started = time.monotonic()
    dataset = build_dataset(
        args.users, args.accounts, args.seed, args.space_id, args.now, **asdict(settings.dataset_options())
    )
    server = EmulatorServer(settings, dataset)  # applies the data's runtime knobs: before the ground truth
    if args.ground_truth:
        _write_atomically(args.ground_truth, ground_truth_chunks(dataset))
    if args.ready_file:
        _write_atomically(args.ready_file, [to_json_bytes({"url": server.url, "pid": os.getpid()})])
    print(
        f"segment-profile-emulator: {server.url} space {args.space_id}, {args.users} users, "
        f"{args.accounts} accounts, ready in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
