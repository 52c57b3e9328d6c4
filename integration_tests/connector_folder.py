"""The connector's folder as Airbyte's tools read it.

metadata.yaml and setup.py's arguments; the Docker build context (what .dockerignore leaves); a
copy of the folder under the name Airbyte gives connector folders, for `airbyte-cdk connector
test`; and the registry entry Airbyte's metadata service publishes from metadata.yaml, which is
what PyAirbyte looks a connector up in.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
# Airbyte's name for the connector, its folder and its console script; the CDK's test command
# picks the source test suite by the `source-` prefix of the folder's name.
CONNECTOR_NAME = "source-segment-profile"


def metadata() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "metadata.yaml").read_text())["data"]


def spec() -> dict[str, Any]:
    return json.loads((REPO_ROOT / "source_segment_profile" / "spec.json").read_text())


# --- setup.py, parsed from its text: the package need not be installed -----------------------


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
    return setup_keyword("version")


# --- the Docker build context -----------------------------------------------------------------


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


# --- the folder as Airbyte names it -----------------------------------------------------------


def copy_as_connector_folder(parent: Path) -> Path:
    """`parent/source-segment-profile`: the files of the working tree that git does not ignore.

    A checkout may be named anything; Airbyte's tools take the connector's name from its folder's.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout
    folder = parent / CONNECTOR_NAME
    for relative in filter(None, listed.split("\0")):
        source = REPO_ROOT / relative
        if source.is_file():  # listed but deleted in the working tree
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / relative)
    return folder


# --- the registry entry -----------------------------------------------------------------------


def registry_entry(registry: str = "oss") -> dict[str, Any]:
    """The source definition Airbyte's registry publishes for `registry` from metadata.yaml.

    As Airbyte's metadata service makes it: the registry's overrides applied, the connector type
    dropped, `connectorSubtype` renamed `sourceType` and `definitionId` `sourceDefinitionId`, the
    flags every public definition carries, the URL of icon.svg (here the file itself) and the
    spec the connector answers; every other field as metadata.yaml has it.
    """
    entry = dict(metadata())
    overrides = {key: value for key, value in entry.pop("registryOverrides")[registry].items() if key != "enabled"}
    entry.update(overrides)
    del entry["connectorType"]
    entry["sourceType"] = entry.pop("connectorSubtype")
    entry["sourceDefinitionId"] = entry.pop("definitionId")
    entry.update(tombstone=False, custom=False, public=True, iconUrl=(REPO_ROOT / entry["icon"]).as_uri(), spec=spec())
    return entry
