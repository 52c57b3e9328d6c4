"""Which connector the rows run: the installed package's sources (what the console script runs),
their fingerprint, and how they differ from the checkout's."""

from __future__ import annotations

import hashlib
import importlib.metadata
import sysconfig
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def installed_connector() -> dict[str, bytes]:
    """The installed package's sources by path: what the console script runs. (Not the checkout's
    egg-info, which the current directory would put first.)"""
    site = sysconfig.get_paths()["purelib"]
    distribution = next(iter(importlib.metadata.distributions(name="source-segment-profile", path=[site])))
    return {
        str(path): distribution.locate_file(path).read_bytes()
        for path in distribution.files
        if str(path).startswith("source_segment_profile/") and str(path).endswith((".py", ".json"))
    }


def fingerprint(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path] + b"\0")
    return digest.hexdigest()[:10]


def compare_with_checkout(files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """(modules of the working tree that are installed differently or not at all, installed
    modules the working tree does not have: setuptools' build/ directory keeps deleted ones)."""
    checkout = {str(path.relative_to(REPOSITORY)): path.read_bytes() for path in (REPOSITORY / "source_segment_profile").rglob("*") if path.suffix in (".py", ".json")}
    differing = sorted(path for path, content in checkout.items() if files.get(path) != content)
    extra = sorted(path for path in files.keys() - checkout.keys() if path.endswith(".py"))
    return differing, extra
