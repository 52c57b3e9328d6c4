"""Package of the Segment Profile API source connector (and its local API emulator)."""

from setuptools import find_packages, setup

VERSION = "0.4.0"

# Pinned: the connector is an image, and the image must behave the same on every build.
# airbyte-cdk 7.39.1 is the 7.x release every behaviour the tests rely on was checked with.
# orjson and numpy come with the CDK too, but the connector imports them itself: orjson to decode
# pages, numpy for the user_events state's sets of up to millions of profile keys (sorted arrays,
# searched and merged in C, 8 bytes a key: key_sets.py). (certifi was pinned for a transport of
# our own that verified TLS itself; requests, which replaced it, brings its own.)
MAIN_REQUIREMENTS = ["airbyte-cdk==7.39.1", "orjson==3.13.0", "numpy==2.4.6"]

TEST_REQUIREMENTS = [
    "pytest==9.2.0",
    "pytest-randomly==5.1.0",  # shuffles the tests each run: the suite must pass in any order
    "pytest-xdist==3.8.0",  # make test runs test files on 4 processes: most tests wait on servers and subprocesses, not the CPU
    "requests-mock==1.12.1",  # the CDK's mock_http imports it without depending on it
    "jsonschema==4.26.0",
    "airbyte-connector-models==0.1.12",  # Airbyte's ConnectorMetadataDefinitionV0, to validate metadata.yaml
    "build==1.6.1",  # the standard build frontend: the packaging tests build the sdist and wheel with it
]

# PyAirbyte runs the embedded DuckDB warehouse sync; 0.71.3 is the release that resolves with
# airbyte-cdk 7.39.1 (left unpinned, pip steps back to airbyte 0.69.0).
WAREHOUSE_REQUIREMENTS = ["airbyte==0.71.3"]

setup(
    name="source-segment-profile",
    version=VERSION,
    description="Airbyte source connector for the Segment Profile API (Segment Unify).",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["source_segment_profile*", "segment_profile_emulator*", "segment_profile_warehouse*"]) + ["source_segment_profile.schemas"],
    # The top-level schemas/ ships inside the package, where the CDK looks for stream schemas.
    package_dir={"source_segment_profile.schemas": "schemas"},
    package_data={"source_segment_profile": ["spec.json"], "source_segment_profile.schemas": ["*.json"]},
    install_requires=MAIN_REQUIREMENTS,
    extras_require={"tests": TEST_REQUIREMENTS, "warehouse": WAREHOUSE_REQUIREMENTS},
    entry_points={
        "console_scripts": [
            "source-segment-profile=source_segment_profile.run:run",
            "segment-profile-emulator=segment_profile_emulator.cli:main",
            "segment-profile-warehouse=segment_profile_warehouse.sync:main",
        ]
    },
)
