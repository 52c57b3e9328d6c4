"""Connector configs for the stream tests: the unit space and token, and the ids a test reads."""

from __future__ import annotations

from typing import Any

from unit_tests.integration.request_builders import ACCESS_TOKEN, SPACE_ID


class ConfigBuilder:
    def __init__(self) -> None:
        self._config: dict[str, Any] = {"space_id": SPACE_ID, "access_token": ACCESS_TOKEN, "user_external_ids": [], "account_external_ids": []}

    def with_user_ids(self, *external_ids: str) -> "ConfigBuilder":
        return self.with_field("user_external_ids", list(external_ids))

    def with_account_ids(self, *external_ids: str) -> "ConfigBuilder":
        return self.with_field("account_external_ids", list(external_ids))

    def with_field(self, name: str, value: Any) -> "ConfigBuilder":
        self._config[name] = value
        return self

    def build(self) -> dict[str, Any]:
        return dict(self._config)
