"""The CDK's HttpMocker, made strict in the two ways this connector needs.

1. A request nobody mocked fails the test. HttpMocker turns requests-mock's NoMockAddress into a
   test failure only when it reaches the test; here it never does: the connector reads on worker
   threads, hands the exception to the CDK, which reports it as a failed stream (a trace message)
   and goes on. A test asserting records or an expected error could pass anyway.
2. A mocked request is sent exactly as often as it has answers. HttpMocker checks "at least"
   (requests-mock repeats the last answer), so a page read twice would pass.

Both checks run when the mocker exits, in decorator and context-manager form alike.
"""

from __future__ import annotations

from types import TracebackType
from typing import List, Optional, Union

from airbyte_cdk.test.mock_http import HttpMocker, HttpRequest, HttpResponse


class StrictHttpMocker(HttpMocker):
    def __init__(self) -> None:
        super().__init__()
        self._answers: list[tuple[HttpRequest, int]] = []

    def get(self, request: HttpRequest, responses: Union[HttpResponse, List[HttpResponse]]) -> None:
        super().get(request, responses)
        self._answers.append((request, 1 if isinstance(responses, HttpResponse) else len(responses)))

    def __exit__(self, exc_type: Optional[type], exc_val: Optional[BaseException], exc_tb: Optional[TracebackType]) -> None:
        # requests-mock notes every request, matched or not; its matcher is gone once it exits.
        sent = [(request.url, request.headers, request.matcher is not None) for request in self._mocker.request_history]
        super().__exit__(exc_type, exc_val, exc_tb)
        problems = [f"unexpected request: GET {url}" for url, _, matched in sent if not matched]
        for mocked, answers in self._answers:
            times = sum(1 for url, headers, _ in sent if HttpRequest(url, headers=headers).matches(mocked))
            if times != answers:
                problems.append(f"{mocked} was sent {times} times, mocked with {answers} answers")
        if problems:
            raise AssertionError("\n".join(problems)) from exc_val
