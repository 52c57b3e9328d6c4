"""Fixtures shared by the emulator suites: each module starts its own `emulator` (module scope,
with the knobs it tests); these read that one's ground truth and talk to it over HTTP."""

import pytest

from unit_tests.emulator.paging import api_session


@pytest.fixture(scope="module")
def truth(emulator):
    return emulator.ground_truth()


@pytest.fixture(scope="module")
def api(emulator):
    with api_session(emulator) as session:
        yield session
