"""Every test starts from the process-wide state it would have found had it run alone (issue 21).

pytest-randomly runs the tests in a new order each time, so no test may lean on what an earlier
one left behind. `process_state_restored` puts back, after every test, the globals that running
the connector in-process changes and leaves changed:

- logging: a `--debug` run (`read(debug=True)`, and the CDK's test `discover`, which always passes
  `--debug`) sets the `airbyte` logger to DEBUG and nothing sets it back, so a later test would log
  request lines it must not; the entrypoint also sets the level of `airbyte.<source name>`. Filters
  go on loggers and on the root's handlers (`run.launch` adds its profile id redaction to the CDK's
  console handler), and `init_logger` reconfigures the root (`logging.config.dictConfig`). Levels,
  propagation, handlers and filters of every logger, and the filters of their handlers, are put
  back; pytest's own capture handlers, which it adds and removes around each phase, are left alone.
- the CDK's secrets list (`airbyte_secrets_utils`): each check, discover or read replaces it with
  that config's secrets and `load_config` appends the Basic auth header: a later test's output
  would be masked with an earlier test's secrets.
- os.environ: the entrypoint points REQUEST_CACHE_PATH at a temporary directory it then deletes.
- sys.excepthook: every AirbyteEntrypoint, and `run.launch`, installs its own.
- the CDK's print buffer: lines for its console handler wait there up to 0.1 s, and would be
  printed during whichever test comes next (where `capfd` sees them). It is emptied before and
  after each test instead.
- the CDK's once-per-process serialisation warning, and the connector's registry of configured
  ids that masking uses (masking.register_configured_ids), when the module has one.

Modules are looked up among those already imported, not imported here: the emulator's suites need
neither the CDK nor the connector, and a connector module that does not import is its tests' failure.

A test that changes any of these on purpose still does so through `monkeypatch` or its own fixture.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
from typing import Any, Iterator

import pytest

# Airbyte's standard tests against the emulator, and their image tests skipped where no Docker
# engine answers: in this session and in the one `airbyte-cdk connector test` starts on this folder.
pytest_plugins = ["integration_tests.acceptance"]

# Module globals restored as they were: (module, name). A module not imported, or a name it lacks, is skipped.
MODULE_GLOBALS = [
    ("airbyte_cdk.utils.airbyte_secrets_utils", "__SECRETS_FROM_CONFIG"),  # what the CDK's filter_secrets masks
    ("airbyte_cdk.entrypoint", "_HAS_LOGGED_FOR_SERIALIZATION_ERROR"),
    ("source_segment_profile.masking", "_configured_places"),
    ("source_segment_profile.masking", "_typed_ids"),
]
# The CDK's console handler writes to this PrintBuffer.
PRINT_BUFFER = ("airbyte_cdk.logger", "PRINT_BUFFER")
# pytest's variable, which it sets for each phase of a test itself.
PYTEST_VARIABLES = {"PYTEST_CURRENT_TEST"}


@pytest.fixture(autouse=True)
def process_state_restored() -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for restored in (logging_restored(), environment_restored(), excepthook_restored(), module_globals_restored()):
            stack.enter_context(restored)
        flush_print_buffer()
        stack.callback(flush_print_buffer)  # runs first: lines logged in the test print in the test's teardown
        yield


def loaded(module_name: str) -> Any:
    return sys.modules.get(module_name)


def flush_print_buffer() -> None:
    module_name, name = PRINT_BUFFER
    buffer = getattr(loaded(module_name), name, None)
    if buffer is not None:
        buffer.flush()


# --- logging ----------------------------------------------------------------------------------


def is_pytest_handler(handler: logging.Handler) -> bool:
    """pytest's capture and live-log handlers: pytest adds them to the root for each phase and takes them off again."""
    return type(handler).__module__.startswith("_pytest")


def all_loggers() -> list[logging.Logger]:
    return [logging.getLogger(), *(item for item in logging.Logger.manager.loggerDict.values() if isinstance(item, logging.Logger))]


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    saved = {
        logger: (logger.level, logger.propagate, logger.disabled, list(logger.filters), [h for h in logger.handlers if not is_pytest_handler(h)])
        for logger in all_loggers()
    }
    handler_filters = {handler: list(handler.filters) for *_, handlers in saved.values() for handler in handlers}
    disabled_below = logging.root.manager.disable
    try:
        yield
    finally:
        for logger in all_loggers():
            if logger in saved:
                level, propagate, disabled, filters, handlers = saved[logger]
            elif logger.name.split(".")[0] == "airbyte":
                # First asked for during the test (`airbyte.<source>`, `airbyte.streams.<name>`): as new.
                level, propagate, disabled, filters, handlers = logging.NOTSET, True, False, [], []
            else:
                continue  # a library's logger, configured as the library set it up when imported
            if logger.level != level:
                logger.setLevel(level)  # setLevel, not `level =`: it also clears the loggers' isEnabledFor caches
            logger.propagate, logger.disabled = propagate, disabled
            logger.filters[:] = filters
            logger.handlers[:] = handlers + [h for h in logger.handlers if is_pytest_handler(h)]
        for handler, filters in handler_filters.items():
            handler.filters[:] = filters
        if logging.root.manager.disable != disabled_below:
            logging.disable(disabled_below)


# --- the environment, the exception hook, module globals -----------------------------------


@contextlib.contextmanager
def environment_restored() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved) - PYTEST_VARIABLES:
            del os.environ[name]
        for name, value in saved.items():
            if name not in PYTEST_VARIABLES and os.environ.get(name) != value:
                os.environ[name] = value


@contextlib.contextmanager
def excepthook_restored() -> Iterator[None]:
    saved = sys.excepthook
    try:
        yield
    finally:
        sys.excepthook = saved


@contextlib.contextmanager
def module_globals_restored() -> Iterator[None]:
    """Each global back to the object it was (a module may have rebound it: the CDK's update_secrets)
    holding what it held (or have changed it in place: add_to_secrets, register_configured_ids)."""
    saved = [
        (module, name, getattr(module, name), copy.copy(getattr(module, name)))
        for module, name in ((loaded(module_name), name) for module_name, name in MODULE_GLOBALS)
        if hasattr(module, name)
    ]
    try:
        yield
    finally:
        for module, name, original, contents in saved:
            if isinstance(original, list):
                original[:] = contents
            elif isinstance(original, (dict, set)):
                original.clear()
                original.update(contents)
            setattr(module, name, original)
