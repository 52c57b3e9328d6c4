import sys
from typing import Any, List, Mapping

from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import ConnectorSpecification
from airbyte_cdk.sources import Source
from airbyte_cdk.sources.utils.schema_helpers import split_config

from source_segment_profile.source import SourceSegmentProfile, load_config


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


def launch(source: Source, args: List[str]) -> None:
    """airbyte_cdk.entrypoint.launch, line for line, with SegmentProfileEntrypoint in its place."""
    entrypoint = SegmentProfileEntrypoint(source)
    parsed_args = entrypoint.parse_args(args)
    with PRINT_BUFFER:
        for message in entrypoint.run(parsed_args):
            print(f"{message}\n", end="")


def run() -> None:
    launch(SourceSegmentProfile(), sys.argv[1:])
