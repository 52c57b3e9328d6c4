"""What Airbyte reads about the connector before running it: metadata.yaml and the Docker image.

The metadata must validate against Airbyte's own model and agree with setup.py, spec.json and the
Dockerfile; the Dockerfile must follow the Airbyte image convention, and its install steps must
produce a connector that answers `spec` and `discover` (run here in a fresh virtualenv: there is
no Docker engine in CI, so nothing here calls `docker build`).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from airbyte_connector_models.metadata.v0.connector_metadata_definition_v0 import ConnectorMetadataDefinitionV0
from packaging.specifiers import SpecifierSet

from integration_tests.connector_cli import STREAMS as CONTRACT_STREAMS
from source_segment_profile.config import REGION_HOSTS

REPO_ROOT = Path(__file__).resolve().parent.parent
# Airbyte identifies the connector by this id in every registry and workspace: it never changes.
DEFINITION_ID = "c2dcf5b9-902f-450f-8ac3-5b2238bbfbb3"
CONNECTOR_SCRIPT = "source-segment-profile"
WORKDIR = "/airbyte/integration_code"
STREAMS = set(CONTRACT_STREAMS)  # the stream names are the contract: one list, in the tests


# --- reading the files ----------------------------------------------------------------------


def metadata() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "metadata.yaml").read_text())["data"]


def setup_call() -> ast.Call:
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setup"
    ]
    assert len(calls) == 1, "setup.py must call setup() once"
    return calls[0]


def setup_keyword(name: str) -> Any:
    """A literal keyword argument of setup(), or the module-level constant it names."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    constants = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    (value,) = [keyword.value for keyword in setup_call().keywords if keyword.arg == name]
    if isinstance(value, ast.Name):
        value = constants[value.id]
    return ast.literal_eval(value)


def package_version() -> str:
    # Parsed from the text: the package need not be installed for this test to run.
    return setup_keyword("version")


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


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_base_is_a_pinned_python_3_11_slim_image_the_package_supports():
    (base,) = dockerfile_values("FROM")
    match = re.fullmatch(r"python:(3\.11\.\d+)-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base)
    assert match, f"FROM {base}: expected python:3.11.<patch>-slim[-<debian>], pinned to a patch release"
    assert match.group(1) in SpecifierSet(setup_keyword("python_requires"))


def test_dockerfile_airbyte_entrypoint_equals_the_entrypoint():
    assert dockerfile_pairs("ENV")["AIRBYTE_ENTRYPOINT"] == " ".join(dockerfile_entrypoint())


def test_dockerfile_entrypoint_is_the_connector_console_script():
    assert dockerfile_entrypoint() == [CONNECTOR_SCRIPT]
    scripts = dict(entry.split("=", 1) for entry in setup_keyword("entry_points")["console_scripts"])
    assert scripts[CONNECTOR_SCRIPT] == "source_segment_profile.run:run"


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
    # test_dockerfile_install_steps_... below mirrors exactly this: COPY of the filtered context.
    assert dockerfile_values("WORKDIR") == [WORKDIR]
    assert dockerfile_values("COPY") in ([". ./"], [". ."])
    assert pip_install_steps(), "the Dockerfile must RUN pip install"


# --- the Dockerfile's install steps, in a fresh virtualenv ---------------------------------


def dockerignore_patterns() -> list[re.Pattern[str]]:
    patterns = []
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions (!) are not mirrored by build_context() below"
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", line.strip("/")):
            regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        patterns.append(re.compile(regex))
    return patterns


def build_context(destination: Path) -> Path:
    """Copies what `docker build .` would send: every file not excluded by .dockerignore.

    As in Docker, a pattern that matches a directory excludes everything in it.
    """
    patterns = dockerignore_patterns()

    def ignored(relative: str) -> bool:
        return any(pattern.fullmatch(relative) for pattern in patterns)

    for directory, subdirectories, files in os.walk(REPO_ROOT):
        relative_directory = Path(directory).relative_to(REPO_ROOT)
        subdirectories[:] = [name for name in subdirectories if not ignored((relative_directory / name).as_posix())]
        for name in files:
            relative = relative_directory / name
            if not ignored(relative.as_posix()):
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO_ROOT / relative, destination / relative)
    return destination


def pip_install_steps() -> list[list[str]]:
    return [shlex.split(command) for command in dockerfile_values("RUN") if shlex.split(command)[:2] == ["pip", "install"]]


def test_dockerignore_leaves_out_tests_and_local_environments(tmp_path):
    context = build_context(tmp_path / "context")
    assert (context / "setup.py").exists() and (context / "source_segment_profile" / "spec.json").exists()
    for left_out in ("unit_tests", "integration_tests", ".git", ".venv", "docs"):
        assert not (context / left_out).exists()


def test_dockerfile_install_steps_yield_a_connector_that_answers_spec_and_discover(tmp_path):
    """The image's build, minus Docker: same context, same pip command, then the entrypoint.

    Takes about a minute (a fresh virtualenv with airbyte-cdk); it is the only test that proves
    setup.py ships the spec and the stream schemas outside the checkout.
    """
    context = build_context(tmp_path / "context")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    # Outside the checkout and without PYTHONPATH, only the installed package can be imported.
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for step in pip_install_steps():
        installed = subprocess.run(
            [str(bin_dir / "python"), "-m", *step], cwd=context, env=environment, capture_output=True, text=True
        )
        assert installed.returncode == 0, f"RUN {shlex.join(step)} failed:\n{installed.stdout[-3000:]}\n{installed.stderr[-3000:]}"

    entrypoint = [str(bin_dir / dockerfile_entrypoint()[0])]
    # As the image's system user 'airbyte': no home directory to write caches into.
    environment["HOME"] = "/nonexistent"
    spec = run_entrypoint(entrypoint + ["spec"], tmp_path, environment)
    assert [message["spec"]["documentationUrl"] for message in spec if message["type"] == "SPEC"] == [
        metadata()["documentationUrl"]
    ]

    config = tmp_path / "config.json"
    # discover makes no request: it proves that every stream schema is packaged.
    config.write_text(json.dumps({"space_id": "spa_demo", "access_token": "token", "user_external_ids": ["user_id:a"]}))
    discovered = run_entrypoint(entrypoint + ["discover", "--config", str(config)], tmp_path, environment)
    (catalog,) = [message["catalog"] for message in discovered if message["type"] == "CATALOG"]
    assert {stream["name"] for stream in catalog["streams"]} == STREAMS
    assert all(stream["json_schema"]["properties"] for stream in catalog["streams"])


def run_entrypoint(command: list[str], cwd: Path, environment: dict[str, str]) -> list[dict[str, Any]]:
    completed = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, f"{command[1:]} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    return [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]


# --- docs/segment-profile.md ----------------------------------------------------------------

DOC_PATH = REPO_ROOT / "docs" / "segment-profile.md"
SOURCE_PACKAGE = REPO_ROOT / "source_segment_profile"


def doc_text() -> str:
    return DOC_PATH.read_text()


def doc_section(title: str) -> str:
    text = doc_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


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
    rows = doc_table_rows("Supported streams and sync modes")
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
    troubleshooting = doc_section("Troubleshooting")
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
    quotes = [re.sub(r"\s+", " ", quote) for quote in re.findall(r"`([^`]+)`", doc_section("Troubleshooting"))]
    long_quotes = [quote for quote in quotes if len(quote) >= 25]
    assert len(long_quotes) > 20
    drifted = [
        quote
        for quote in long_quotes
        if not any(re.search(".*".join(map(re.escape, quote.split("…"))), message) for message in messages)
    ]
    assert not drifted, f"docs/segment-profile.md quotes messages that no code writes: {drifted}"


def test_doc_changelog_has_the_current_version():
    assert re.search(rf"^\| {re.escape(package_version())} \| \d{{4}}-\d{{2}}-\d{{2}} \|", doc_section("Changelog"), re.M)
