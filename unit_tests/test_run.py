"""The console script's entrypoint (source_segment_profile/run.py): the CDK's, with the connector's
own config checks first."""

from __future__ import annotations

import json

import pytest

from source_segment_profile.run import launch
from source_segment_profile.source import SourceSegmentProfile
from unit_tests.builders import config
from unit_tests.conftest import write_json

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits


def printed_messages(capsys) -> list[dict]:
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("{") for line in lines), lines  # protocol messages only, one a line
    return [json.loads(line) for line in lines]


def test_launch_prints_every_message_as_one_json_line(capsys):
    launch(SourceSegmentProfile(), ["spec"])

    messages = printed_messages(capsys)
    assert [message["type"] for message in messages if message["type"] != "LOG"] == ["SPEC"]


def test_a_bad_config_fails_check_with_the_connectors_own_message_naming_the_field(capsys, tmp_path, api):
    bad = config(user_external_ids=["jane.doe@example.com"])  # no `type:`; the schema's own message would show it in clear

    launch(SourceSegmentProfile(), ["check", "--config", write_json(tmp_path / "config.json", bad)])

    (status,) = [message["connectionStatus"] for message in printed_messages(capsys) if message["type"] == "CONNECTION_STATUS"]
    assert status["status"] == "FAILED"
    assert "user_external_ids" in status["message"] and "j***@example.com" in status["message"]
    assert "jane.doe" not in json.dumps(status)
    assert api.seen == []
