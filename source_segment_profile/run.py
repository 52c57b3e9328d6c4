import logging
import re
import sys
import threading
import time
from types import TracebackType
from typing import Any, List, Mapping, Optional

import orjson
from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.exception_handler import assemble_uncaught_exception
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import AirbyteMessageSerializer, ConnectorSpecification
from airbyte_cdk.sources import Source
from airbyte_cdk.sources.utils.schema_helpers import split_config
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets

from source_segment_profile.masking import redact_profile_ids
from source_segment_profile.source import SourceSegmentProfile, load_config

# The messages that carry the user's data, as it is: records (their `external_id` is the point)
# and state (which names profiles by digest only). Everything else is text for people: redacted.
# (The CDK writes a message with orjson, or with json.dumps and its spaces when orjson cannot:
# integers beyond 64 bits.)
DATA_MESSAGE = re.compile(r'\{\s*"type"\s*:\s*"(?:RECORD|STATE)"')

logger = logging.getLogger("airbyte")
# Airbyte's platform ends a source that stays silent too long (metadata.yaml's
# maxSecondsBetweenMessages); no phase of a sync may be: a wait on the API, a long retry.
HEARTBEAT_SECONDS = 30.0


class SegmentProfileEntrypoint(AirbyteEntrypoint):
    """The CDK's entrypoint, with the connector's own config checks run before the JSON-schema one.

    The CDK's check says only "Config validation error: 'jane@example.com' does not match
    '^[^:\\s]+:.+$'": no field name, and an email in clear. The connector's checks cover every
    constraint of spec.json, name the field and mask personal ids, so they go first; the schema
    check still runs after them for anything they would not know.
    """

    @staticmethod
    def validate_connection(source_spec: ConnectorSpecification, config: Mapping[str, Any]) -> None:
        connector_config, _ = split_config(config)
        load_config(connector_config)
        AirbyteEntrypoint.validate_connection(source_spec, config)


class ProfileIdRedaction(logging.Filter):
    """Masks profile ids in every log line before it is written, whichever library logged it
    (urllib3's debug lines and requests' exception texts quote URLs, and URLs hold ids)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_profile_ids(record.getMessage()), ()
        if record.exc_info:
            record.exc_text = redact_profile_ids(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def redact_message(message: str) -> str:
    return message if DATA_MESSAGE.match(message) else redact_profile_ids(message)


def emit_uncaught(exception_type: type[BaseException], error: BaseException, traceback: Optional[TracebackType]) -> None:
    """The CDK's uncaught-exception hook, with the trace message's text redacted as well."""
    if issubclass(exception_type, KeyboardInterrupt):
        sys.__excepthook__(exception_type, error, traceback)
        return
    logger.fatal(error, exc_info=error)
    trace = assemble_uncaught_exception(exception_type, error).as_airbyte_message()
    print(redact_profile_ids(filter_secrets(orjson.dumps(AirbyteMessageSerializer.dump(trace)).decode())))


class Heartbeat:
    """A line whenever nothing was printed for HEARTBEAT_SECONDS, from a thread of its own, so
    that a sync waiting on the API (a Retry-After, a slow answer, retries) is never silent."""

    last_output = time.monotonic()  # every message (launch) and log line (as_log_filter) moves it

    @classmethod
    def output_seen(cls) -> None:
        cls.last_output = time.monotonic()

    @classmethod
    def as_log_filter(cls, record: logging.LogRecord) -> bool:
        """A handler filter: a log line is output too."""
        cls.output_seen()
        return True

    def __init__(self, seconds: float):
        self._seconds = seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        Heartbeat.output_seen()
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._seconds / 6):
            silent = time.monotonic() - Heartbeat.last_output
            if silent >= self._seconds:
                logger.info(f"Heartbeat: still running, nothing new for {silent:.0f} s (waiting on the Profile API).")
                PRINT_BUFFER.flush()


def launch(source: Source, args: List[str]) -> None:
    """airbyte_cdk.entrypoint.launch, with SegmentProfileEntrypoint in its place and every line
    for people (logs, traces, check results) passed through the profile id redaction."""
    entrypoint = SegmentProfileEntrypoint(source)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, ProfileIdRedaction) for existing in handler.filters):
            handler.addFilter(ProfileIdRedaction())
            handler.addFilter(Heartbeat.as_log_filter)
    sys.excepthook = emit_uncaught
    parsed_args = entrypoint.parse_args(args)
    with PRINT_BUFFER, Heartbeat(HEARTBEAT_SECONDS):
        for message in entrypoint.run(parsed_args):
            print(f"{redact_message(message)}\n", end="")
            Heartbeat.output_seen()


def run() -> None:
    launch(SourceSegmentProfile(), sys.argv[1:])
