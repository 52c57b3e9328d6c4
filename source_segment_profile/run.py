import sys

from airbyte_cdk.entrypoint import launch

from source_segment_profile.source import SourceSegmentProfile


def run() -> None:
    launch(SourceSegmentProfile(), sys.argv[1:])
