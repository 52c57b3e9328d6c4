"""Measure the request rate the emulator sustains: `python -m segment_profile_emulator.loadtest`.

Starts an emulator without latency or rate limit, then drives it from several client processes
(so that the clients do not share the server's GIL, nor each other's), each over one keep-alive
connection, with a mix of traits, events and external_ids requests on real profiles.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import multiprocessing
import random
import statistics
import sys
import time
import urllib.parse
from collections import Counter
from typing import NamedTuple

from .dataset import build_dataset
from .testing import running_emulator

ACCOUNTS = 10
# (resource, query, weight) of the request mix
REQUEST_MIX = (
    ("traits", "limit=200", 4),
    ("events", "limit=100", 3),
    ("external_ids", "limit=100", 3),
)


def request_paths(users: int, seed: int, space_id: str) -> list[str]:
    """Profile request paths in the mix's proportions, over every user's lookup id."""
    dataset = build_dataset(users, ACCOUNTS, seed, space_id)
    paths = []
    for user in dataset.users:
        encoded_id = urllib.parse.quote(user.lookup_id, safe=":")
        for resource, query, weight in REQUEST_MIX:
            path = f"/v1/spaces/{space_id}/collections/users/profiles/{encoded_id}/{resource}?{query}"
            paths += [path] * weight
    return paths


def drive(url: str, token: str, paths: list[str], start_at: float, stop_at: float, max_requests: int, seed: int) -> tuple:
    """One client: sends requests back to back on one keep-alive connection until the deadline."""
    parsed = urllib.parse.urlsplit(url)
    headers = {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}
    order = random.Random(seed)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    statuses: Counter[int] = Counter()
    latencies = []
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < stop_at and len(latencies) < max_requests:
        sent = time.perf_counter()
        connection.request("GET", order.choice(paths), headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - sent)
        statuses[response.status] += 1
    connection.close()
    return statuses, latencies, time.time()


class LoadResult(NamedTuple):
    requests: int
    seconds: float
    clients: int
    statuses: Counter
    latencies: list[float]
    server_stats: dict

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    def summary(self) -> str:
        cuts = statistics.quantiles(self.latencies, n=100) if self.requests > 1 else [0.0] * 99
        return (
            f"{self.requests} requests in {self.seconds:.1f} s from {self.clients} clients: "
            f"sustained {self.requests_per_second:.0f} requests/s; latency p50 {cuts[49] * 1000:.1f} ms, "
            f"p95 {cuts[94] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms; statuses {dict(self.statuses)}; "
            f"server counted {self.server_stats['requests_total']}, peak in flight {self.server_stats['peak_in_flight']}"
        )


def run_load(seconds: float, clients: int, users: int = 1000, seed: int = 42, max_requests: int = 1_000_000) -> LoadResult:
    """Starts an emulator (no latency, no rate limit) and drives it from `clients` processes."""
    with running_emulator(users=users, accounts=ACCOUNTS, seed=seed, rate_limit=0) as emulator:
        paths = request_paths(users, seed, emulator.space_id)
        start_at = time.time() + 0.5  # every client starts together, once all are spawned
        jobs = [
            (emulator.url, emulator.token, paths, start_at, start_at + seconds, max(1, max_requests // clients), client)
            for client in range(clients)
        ]
        with multiprocessing.get_context("spawn").Pool(clients) as pool:
            results = pool.starmap(drive, jobs)
        server_stats = emulator.stats()
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    for client_statuses, client_latencies, _ in results:
        statuses.update(client_statuses)
        latencies += client_latencies
    duration = max(finished for _, _, finished in results) - start_at
    return LoadResult(len(latencies), duration, clients, statuses, latencies, server_stats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m segment_profile_emulator.loadtest", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4, help="client processes, one connection each")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many in total")
    parser.add_argument("--min-rps", type=float, default=0.0, help="exit 1 if the sustained rate is below this")
    args = parser.parse_args(argv)
    result = run_load(args.seconds, args.clients, args.users, args.seed, args.max_requests)
    print(result.summary())
    if result.requests_per_second < args.min_rps:
        sys.exit(f"below the required {args.min_rps:.0f} requests/s")


if __name__ == "__main__":
    main()
