"""What Airbyte reads about the connector before running it: metadata.yaml, the registry entry
made from it, icon.svg, the Docker image's recipe and the user documentation.

The metadata must validate against Airbyte's own model and agree with setup.py, spec.json and the
Dockerfile; the Dockerfile must follow the Airbyte image convention. Building and installing the
package (there is no Docker engine in CI, so nothing here calls `docker build`) is
integration_tests/test_packaging.py.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import uuid
import xml.etree.ElementTree as ElementTree
from typing import Any

import yaml
from airbyte_connector_models.metadata.v0.connector_metadata_definition_v0 import ConnectorMetadataDefinitionV0
from airbyte_connector_models.metadata.v0.connector_registry_v0 import ConnectorRegistryV0ConnectorRegistrySourceDefinition
from markdown_it import MarkdownIt
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from integration_tests.connector_cli import STREAMS as CONTRACT_STREAMS
from integration_tests.connector_folder import (
    CONNECTOR_NAME,
    REPO_ROOT,
    build_context,
    metadata,
    package_version,
    registry_entry,
    setup_keyword,
)
from source_segment_profile.config import REGION_HOSTS
from source_segment_profile.run import HEARTBEAT_SECONDS

# Airbyte identifies the connector by this id in every registry and workspace: it never changes.
DEFINITION_ID = "c2dcf5b9-902f-450f-8ac3-5b2238bbfbb3"
WORKDIR = "/airbyte/integration_code"
STREAMS = set(CONTRACT_STREAMS)  # the stream names are the contract: one list, in the tests


# --- reading the Dockerfile -----------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def dockerfile_values(instruction: str) -> list[str]:
    return [arguments for keyword, arguments in dockerfile_instructions() if keyword == instruction]


def dockerfile_pairs(instruction: str) -> dict[str, str]:
    """The KEY=value pairs of every ENV or LABEL instruction, later ones winning."""
    pairs: dict[str, str] = {}
    for arguments in dockerfile_values(instruction):
        for item in shlex.split(arguments):
            key, separator, value = item.partition("=")
            assert separator, f"{instruction} {arguments!r}: write KEY=value pairs"
            pairs[key] = value
    return pairs


def dockerfile_entrypoint() -> list[str]:
    entrypoints = dockerfile_values("ENTRYPOINT")
    assert len(entrypoints) == 1, "the Dockerfile needs exactly one ENTRYPOINT"
    # The exec (JSON) form: the connector is PID 1 and receives Airbyte's SIGTERM itself.
    return json.loads(entrypoints[0])


# --- metadata.yaml --------------------------------------------------------------------------


def test_metadata_validates_against_airbyte_connector_metadata_model():
    ConnectorMetadataDefinitionV0.model_validate(yaml.safe_load((REPO_ROOT / "metadata.yaml").read_text()))


def test_metadata_declares_the_connector_as_airbyte_registers_it():
    data = metadata()
    assert data["definitionId"] == DEFINITION_ID
    assert uuid.UUID(data["definitionId"])
    assert data["name"] == "Segment Profile"
    assert data["connectorType"] == "source"
    assert data["connectorSubtype"] == "api"
    assert data["dockerRepository"] == "airbyte/source-segment-profile"
    assert data["githubIssueLabel"] == "source-segment-profile"
    assert data["license"] == "MIT"
    assert data["releaseStage"] == "alpha"
    assert data["supportLevel"] == "community"
    assert {"language:python", "cdk:python"} <= set(data["tags"])
    assert data["registryOverrides"]["cloud"]["enabled"] and data["registryOverrides"]["oss"]["enabled"]


def test_docker_image_tag_equals_the_package_version():
    assert metadata()["dockerImageTag"] == package_version()


def test_metadata_documentation_url_is_the_one_the_spec_shows():
    spec = json.loads((REPO_ROOT / "source_segment_profile" / "spec.json").read_text())
    assert metadata()["documentationUrl"] == spec["documentationUrl"]
    assert metadata()["documentationUrl"] == "https://docs.airbyte.com/integrations/sources/segment-profile"


def test_allowed_hosts_cover_the_host_of_every_region():
    region_hosts = {url.removeprefix("https://") for url in REGION_HOSTS.values()}
    assert set(metadata()["allowedHosts"]["hosts"]) == region_hosts


def test_metadata_publishes_the_package_to_pypi_under_its_distribution_name():
    # PyAirbyte installs a registered Python connector by this name and reads its installed version
    # under it: it must be setup.py's name (integration_tests/test_packaging.py checks both).
    assert metadata()["remoteRegistries"]["pypi"] == {"enabled": True, "packageName": setup_keyword("name")}
    assert setup_keyword("name") == CONNECTOR_NAME


def test_metadata_icon_is_a_square_svg_at_the_root():
    icon = REPO_ROOT / metadata()["icon"]
    assert icon.name == "icon.svg" and icon.parent == REPO_ROOT
    svg = ElementTree.parse(icon).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    *_, width, height = (float(number) for number in svg.get("viewBox").split())
    assert width == height == float(svg.get("width")) == float(svg.get("height"))


def test_metadata_links_the_profile_api_reference_and_its_limits():
    links = {link["type"]: link["url"] for link in metadata()["externalDocumentationUrls"]}
    assert links == {
        "api_reference": "https://segment.com/docs/unify/profile-api/",
        "rate_limits": "https://segment.com/docs/unify/product-limits/#profile-api",
    }
    assert links["api_reference"] in doc_text()


def test_max_seconds_between_messages_leaves_room_for_ten_missed_heartbeats():
    # The platform fails a sync silent for this long; the connector writes a heartbeat line after
    # HEARTBEAT_SECONDS of silence. Ten may go missing, and a hung sync still fails within the hour.
    assert 10 * HEARTBEAT_SECONDS <= metadata()["maxSecondsBetweenMessages"] <= 3600


def test_registry_entries_made_from_metadata_validate_and_show_icon_heartbeat_links_and_package():
    for registry in ("oss", "cloud"):
        entry = registry_entry(registry)
        ConnectorRegistryV0ConnectorRegistrySourceDefinition.model_validate(entry)
        assert entry["sourceDefinitionId"] == DEFINITION_ID and entry["sourceType"] == "api"
        assert {"iconUrl", "maxSecondsBetweenMessages", "externalDocumentationUrls", "remoteRegistries"} <= set(entry)


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_base_is_a_pinned_python_3_11_slim_image_the_package_supports():
    (base,) = dockerfile_values("FROM")
    match = re.fullmatch(r"python:(3\.11\.\d+)-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base)
    assert match, f"FROM {base}: expected python:3.11.<patch>-slim[-<debian>], pinned to a patch release"
    assert match.group(1) in SpecifierSet(setup_keyword("python_requires"))


def test_dockerfile_airbyte_entrypoint_equals_the_entrypoint():
    assert dockerfile_pairs("ENV")["AIRBYTE_ENTRYPOINT"] == " ".join(dockerfile_entrypoint())


def test_dockerfile_entrypoint_is_the_connector_console_script():
    assert dockerfile_entrypoint() == [CONNECTOR_NAME]
    scripts = dict(entry.split("=", 1) for entry in setup_keyword("entry_points")["console_scripts"])
    assert scripts[CONNECTOR_NAME] == "source_segment_profile.run:run"


def test_dockerfile_labels_equal_metadata_repository_and_tag():
    labels = dockerfile_pairs("LABEL")
    assert labels["io.airbyte.name"] == metadata()["dockerRepository"]
    assert labels["io.airbyte.version"] == metadata()["dockerImageTag"]


def test_dockerfile_runs_the_connector_as_a_non_root_user():
    users = dockerfile_values("USER")
    assert users, "the Dockerfile must switch to a non-root USER"
    # The last USER is the one the container runs as.
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_installs_the_whole_build_context_in_the_airbyte_workdir():
    # build_context() mirrors exactly this: COPY of the filtered context.
    assert dockerfile_values("WORKDIR") == [WORKDIR]
    assert dockerfile_values("COPY") in ([". ./"], [". ."])


def pip_install_steps() -> list[list[str]]:
    return [shlex.split(command) for command in dockerfile_values("RUN") if shlex.split(command)[:2] == ["pip", "install"]]


def test_dockerfile_installs_the_build_context_with_the_pinned_versions():
    # integration_tests/test_packaging.py builds the wheel from this same context and installs it
    # with this constraints file in a fresh virtualenv: the image's install, minus Docker.
    assert pip_install_steps() == [["pip", "install", "--no-cache-dir", "-c", "constraints.txt", "."]]


def test_dockerignore_leaves_out_tests_and_local_environments(tmp_path):
    context = build_context(tmp_path / "context")
    assert (context / "setup.py").exists() and (context / "source_segment_profile" / "spec.json").exists()
    for left_out in ("unit_tests", "integration_tests", ".git", ".venv", "docs", ".tmp"):
        assert not (context / left_out).exists()


# --- docs/segment-profile.md ----------------------------------------------------------------

DOC_PATH = REPO_ROOT / "docs" / "segment-profile.md"
SOURCE_PACKAGE = REPO_ROOT / "source_segment_profile"


def doc_text() -> str:
    return DOC_PATH.read_text()


def doc_headings() -> list[tuple[int, str, int]]:
    """(level, title, line) of every heading, the title as Airbyte's docs check reads it: up to the
    heading's first inline code or link."""
    tokens = MarkdownIt("commonmark").parse(doc_text())
    return [
        (int(token.tag[1:]), tokens[index + 1].children[0].content, token.map[0])
        for index, token in enumerate(tokens)
        if token.type == "heading_open"
    ]


def doc_section(title: str) -> str:
    """The section under the heading `title`, subsections included, without the heading line."""
    lines = doc_text().splitlines()
    headings = doc_headings()
    (index,) = [index for index, (_, name, _) in enumerate(headings) if name == title]
    level, _, start = headings[index]
    end = next((line for deeper, _, line in headings[index + 1 :] if deeper <= level), len(lines))
    return "\n".join(lines[start + 1 : end]).strip()


def doc_table_rows(section: str) -> dict[str, list[str]]:
    """Rows of the markdown tables of a section, by the backticked name in their first cell."""
    rows = {}
    for line in doc_section(section).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"`[^`]+`", cells[0]):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def discovered_streams() -> list[Any]:
    from source_segment_profile.source import SourceSegmentProfile

    config = {"space_id": "spa_demo", "access_token": "token", "user_external_ids": ["user_id:a"]}
    return SourceSegmentProfile().streams(config)


def primary_key_fields(stream: Any) -> list[str]:
    key = stream.primary_key
    key = [key] if isinstance(key, str) else key
    return [part if isinstance(part, str) else ".".join(part) for part in key]


def test_doc_streams_table_gives_every_stream_its_primary_key_and_sync_modes():
    rows = doc_table_rows("Supported Streams")
    streams = discovered_streams()
    assert set(rows) == {stream.name for stream in streams}
    for stream in streams:
        endpoint, primary_key, sync_modes = rows[stream.name][:3]
        assert f"/{stream.resource}`" in endpoint and stream.collection in endpoint, stream.name
        assert re.findall(r"`([^`]+)`", primary_key) == primary_key_fields(stream), stream.name
        assert ("Incremental" in sync_modes) == stream.supports_incremental, stream.name
        if stream.supports_incremental:
            assert f"cursor `{stream.cursor_field}`" in sync_modes


def test_doc_configuration_table_lists_every_spec_property_with_its_default():
    properties = json.loads((SOURCE_PACKAGE / "spec.json").read_text())["connectionSpecification"]["properties"]
    rows = doc_table_rows("Configuration")
    assert set(rows) == set(properties)
    for name, schema in properties.items():
        title, required, default = rows[name][:3]
        assert title == schema["title"], name
        if "default" in schema:
            assert f"`{schema['default']}`" == default, name


def error_classes() -> set[str]:
    """Every exception class defined in errors.py and config.py (ConfigError)."""
    import source_segment_profile.config as config_module
    import source_segment_profile.errors as errors_module

    return {
        name
        for module in (errors_module, config_module)
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == module.__name__
    }


def test_doc_troubleshooting_covers_every_error_class():
    troubleshooting = doc_section("Limitations & Troubleshooting")
    missing = [name for name in sorted(error_classes()) if f"`{name}`" not in troubleshooting]
    assert not missing, f"docs/segment-profile.md does not troubleshoot {missing}"


def code_messages() -> list[str]:
    """Every string literal of the connector, f-strings with each placeholder written `…`."""
    messages = []
    for path in SOURCE_PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                messages.append(
                    "".join(part.value if isinstance(part, ast.Constant) else "…" for part in node.values)
                )
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                messages.append(node.value)
    return messages


def test_doc_quotes_error_messages_as_the_code_writes_them():
    # A quoted message is a fragment of a message of the code, `…` standing for what varies.
    messages = code_messages()
    quotes = [re.sub(r"\s+", " ", quote) for quote in re.findall(r"`([^`]+)`", doc_section("Limitations & Troubleshooting"))]
    long_quotes = [quote for quote in quotes if len(quote) >= 25]
    assert len(long_quotes) > 20
    drifted = [
        quote
        for quote in long_quotes
        if not any(re.search(".*".join(map(re.escape, quote.split("…"))), message) for message in messages)
    ]
    assert not drifted, f"docs/segment-profile.md quotes messages that no code writes: {drifted}"


def changelog_rows() -> dict[str, list[str]]:
    """The changelog table's rows by version, in the order they are written."""
    rows = {}
    for line in doc_section("Changelog").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"\d+\.\d+\.\d+", cells[0]):
            rows[cells[0]] = cells[1:]
    return rows


def test_doc_changelog_has_a_row_per_version_newest_first():
    rows = changelog_rows()
    versions = [Version(version) for version in rows]
    assert versions == sorted(versions, reverse=True)
    assert {"0.1.0", "0.2.0", package_version()} <= set(rows)
    # The version being built was released on a date.
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", rows[package_version()][0])


# --- the docs as Airbyte's documentation checks read them (connectors_qa) -------------------

# Airbyte's documentation template, as its header check walks it; the connector-specific
# headings go where the template says CONNECTOR_SPECIFIC.
CONNECTOR_SPECIFIC = "{ Connector-specific features }"


def template_headings(name: str) -> tuple[list[str], set[str]]:
    """The template's headings in order, and those a page may leave out."""
    cloud, oss = "For Airbyte Cloud:", "For Airbyte Open Source:"
    in_airbyte = f"Set up the {name} connector in Airbyte"
    ordered = [
        name, "Prerequisites", "Setup guide", f"Set up {name}", cloud, oss, CONNECTOR_SPECIFIC,
        in_airbyte, cloud, oss, CONNECTOR_SPECIFIC, "Supported sync modes", "Supported Streams",
        CONNECTOR_SPECIFIC, "Performance considerations", "Data type map", "Limitations & Troubleshooting",
        CONNECTOR_SPECIFIC, "Tutorials", "Changelog",
    ]
    optional = {in_airbyte, cloud, oss, CONNECTOR_SPECIFIC, "Performance considerations", "Data type map",
                "Limitations & Troubleshooting", "Tutorials"}
    return ordered, optional


def test_doc_headings_follow_airbyte_template_order():
    # The walk of Airbyte's check: a heading equals the template's next one, or the template's is
    # optional and skipped, or the page is at a connector-specific place and the heading is none of
    # the template's.
    actual = [title for level, title, _ in doc_headings() if level <= 4]
    expected, optional = template_headings(metadata()["name"])
    at, want = 0, 0
    while at < len(actual) and want < len(expected):
        if expected[want] == CONNECTOR_SPECIFIC:
            at, want = (at, want + 1) if actual[at] in expected else (at + 1, want)
        elif actual[at] == expected[want]:
            at, want = at + 1, want + 1
        elif expected[want] in optional:
            want += 1
        else:
            raise AssertionError(f"heading {actual[at]!r} stands where the template has {expected[want]!r}")
    assert want == len(expected), f"headings missing: {[h for h in expected[want:] if h not in optional]}"


def test_doc_sections_open_with_airbyte_template_text():
    name = metadata()["name"]
    intro = doc_section(name).replace(metadata()["documentationUrl"], "{docs_link}")
    assert (
        "<HideInUI>\n\nThis page contains the setup guide and reference information for the "
        f"[{name}]({{docs_link}}) source connector.\n\n</HideInUI>"
    ) in intro
    assert doc_section("For Airbyte Cloud:").startswith(
        "1. [Log into your Airbyte Cloud](https://cloud.airbyte.com/workspaces) account.\n"
        "2. Click Sources and then click + New source.\n"
        f"3. On the Set up the source page, select {name} from the Source type dropdown.\n"
        f"4. Enter a name for the {name} connector.\n"
    )
    assert doc_section("For Airbyte Open Source:").startswith("1. Navigate to the Airbyte Open Source dashboard.\n")
    assert doc_section("Supported sync modes").startswith(
        f"The {name} source connector supports the following "
        "[sync modes](https://docs.airbyte.com/cloud/core-concepts/#connection-sync-modes):"
    )
    assert doc_section("Changelog").startswith("<details>\n  <summary>Expand to review</summary>")


def test_doc_prerequisites_describe_every_required_field():
    specification = json.loads((SOURCE_PACKAGE / "spec.json").read_text())["connectionSpecification"]
    prerequisites = doc_section("Prerequisites").lower()
    # Airbyte's check: each required field's title, credentials by one of its keywords.
    credentials = {"access_token", "credentials", "client_id", "client_secret", "refresh_token", "authorization"}
    titles = [specification["properties"][field]["title"] for field in specification["required"] if field not in credentials]
    assert [title for title in titles if title.lower() not in prerequisites] == []
    assert any(word in prerequisites for word in ("account", "auth", "credentials", "access", "client"))


def schema_type_words(schema: dict[str, Any]) -> set[str]:
    """Every JSON type, format and airbyte_type a stream schema declares, nested ones included."""
    types = schema.get("type", [])
    words = set([types] if isinstance(types, str) else types) | {schema[key] for key in ("format", "airbyte_type") if key in schema}
    children = [*schema.get("properties", {}).values(), *([schema["items"]] if isinstance(schema.get("items"), dict) else [])]
    return words.union(*(schema_type_words(child) for child in children))


def test_doc_data_type_map_covers_every_type_the_stream_schemas_declare():
    declared = set().union(*(schema_type_words(json.loads(path.read_text())) for path in (REPO_ROOT / "schemas").glob("*.json")))
    data_type_map = doc_section("Data type map")
    assert [word for word in sorted(declared) if f"`{word}`" not in data_type_map] == []
