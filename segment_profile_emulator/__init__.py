"""A local emulator of the Segment Profile API, serving a deterministic synthetic space.

Run it with `segment-profile-emulator --help` (or `python -m segment_profile_emulator`); drive it
from tests with `segment_profile_emulator.testing.running_emulator`.

The modules, from a request's way in to the data it is answered from:
- server.py: the order a profile request goes through (auth, route, space, rate limit, faults,
  answer); handler.py: HTTP in and out; admin.py: the /_emulator/ routes; cli.py: the command line.
- routes.py: the profile routes; listing.py: the users listing; paging.py: limits and cursors;
  answers.py: the Outcome decided for a request, and the error answers.
- settings.py: the knobs; rate_limit.py, clock.py, stats.py and faults.py: the token bucket, the
  emulated clock, the counters, and what goes wrong on purpose.
- dataset.py: the synthetic space, made by profiles.py, traits.py, events.py, options.py,
  randomness.py and formats.py; messages.py: messages delivered to users while running (POST
  /_emulator/messages), laid over the space; ground_truth.py: everything it serves, for tests to
  check.
- testing.py: running it from tests; loadtest.py: measuring the rate it sustains.
"""
