"""No test here really waits, and each can see every wait the connector asked for.

The seam: the `sleep` that every RateBudget and ProfileApiClient is built with. A request sent
through a stream (`ProfileStream.read_profile` -> `ProfileApiClient.get`) waits in exactly two
places: `RateBudget.acquire`, for its slot (a Retry-After pause included), and the client's own
backoff before a retry. Both call the `sleep` their object was built with; nothing else on that
path waits on purpose (the reader's queues only wait for the next item). So both constructors
get the recorder as their default `sleep`, on the class: whoever builds a client or a budget (the
source for its streams, check, the listing probe, or any later code) gets it, and no request can
get past it. The clock stays real: `acquire` trusts its sleep and returns the slot it waited for.

Not chosen, and why:
- patching `rate_budget.wait_unless_stopped`: it is bound as the default argument when the
  classes are defined, so the module attribute is never looked up again.
- patching `time.sleep` (or `threading.Event.wait`): the streams pass their `stopping` event, so
  their waits are `Event.wait` calls, which cannot be patched for these modules only; and a
  process-wide patch would also reach the CDK's and pytest's own waits.
- a fast budget (`requests_per_second: 1000`) with real waits: a Retry-After of 1 s and the
  first retry's backoff (0.25 to 0.5 s) would still be slept, per stream, and could not be
  asserted on.

`waits` (a list of seconds) is put on the TestCase as `self.waits`.
"""

from __future__ import annotations

import functools
import threading
from typing import Iterator, Optional

import pytest

from source_segment_profile.api_client import ProfileApiClient
from source_segment_profile.rate_budget import RateBudget


class Waits(list):
    """The seconds the connector asked to wait, in order; each returns at once."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def wait(self, seconds: float, stopping: Optional[threading.Event] = None) -> None:
        with self._lock:
            self.append(seconds)


@pytest.fixture(autouse=True)
def waits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Waits]:
    recorded = Waits()
    for cls in (RateBudget, ProfileApiClient):
        # partialmethod: a `sleep` passed explicitly still wins, as it would without this patch.
        monkeypatch.setattr(cls, "__init__", functools.partialmethod(cls.__init__, sleep=recorded.wait))
    if request.instance is not None:
        request.instance.waits = recorded
    yield recorded
