"""The CDK's own ceiling: a source whose one stream yields pre-recorded records without any HTTP.

    python -m benchmarks.cdk_ceiling read --config records.json --catalog catalog.json

`records.json` is `{"connector_output": "<a file of the connector's output>"}`; the stream yields
the records of its RECORD lines through the CDK's entrypoint, message serialisation and stdout
path, in a process set up as the connector's (source_segment_profile.run.prepare_process).
"""

import json
import sys
from typing import Any, Iterable, List, Mapping, Optional, Tuple

from airbyte_cdk.entrypoint import launch
from airbyte_cdk.models import ConnectorSpecification
from airbyte_cdk.sources import AbstractSource
from airbyte_cdk.sources.streams import Stream

from source_segment_profile.run import prepare_process


class PrerecordedEvents(Stream):
    name = "user_events"
    primary_key = ["external_id", "messageId"]

    def __init__(self, connector_output: str):
        # The connector's RECORD messages, as it printed them: decoded before the read starts.
        with open(connector_output, "rb") as lines:
            self._records = [json.loads(line)["record"]["data"] for line in lines if line.startswith(b'{"type":"RECORD"')]

    def read_records(self, *args: Any, **kwargs: Any) -> Iterable[Mapping[str, Any]]:
        yield from self._records

    def get_json_schema(self) -> Mapping[str, Any]:
        return {"type": "object", "additionalProperties": True}


class CeilingSource(AbstractSource):
    def spec(self, logger: Any) -> ConnectorSpecification:
        return ConnectorSpecification(connectionSpecification={"type": "object", "additionalProperties": True})

    def check_connection(self, logger: Any, config: Mapping[str, Any]) -> Tuple[bool, Optional[Any]]:
        return True, None

    def streams(self, config: Mapping[str, Any]) -> List[Stream]:
        return [PrerecordedEvents(config["connector_output"])]


if __name__ == "__main__":
    # The same process setup as the connector's run(): malloc arenas, stdout pipe, print buffer.
    prepare_process()
    launch(CeilingSource(), sys.argv[1:])
