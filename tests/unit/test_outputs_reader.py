"""The typed reader other teams use: SitelineStack reads a stack's outputs through StackReference."""

from __future__ import annotations

from typing import Any

import jsonschema
import pulumi
import pytest

from components.outputs import SitelineStack, SiteOutputs
from tests.conftest import released
from tests.harness import _Mocks

LIVE = {
    "role": "live", "target": "azure", "url": "https://www.example.com", "release": released(),
    "database": {"engine": "postgres", "host": "db.example.com", "port": 5432, "name": "site", "id": "/sub/x"},
    "smtp": {"host": "smtp.example.com", "port": 587, "mode": "deliver"}, "contract": 1,
}


def _read(outputs: dict[str, Any]) -> SiteOutputs:
    pulumi.runtime.set_mocks(_Mocks({"acme/siteline/live": outputs}), project="consumer", stack="prod")
    seen: list[SiteOutputs] = []

    @pulumi.runtime.test
    def read() -> pulumi.Output[Any]:
        return SitelineStack("acme/siteline/live").outputs.apply(seen.append)

    read()
    return seen[0]


def test_reader_returns_typed_outputs() -> None:
    site = _read(LIVE)
    assert site.url == "https://www.example.com"
    assert site.release.sha256 == "a" * 64
    assert site.database.port == 5432 and site.database.id == "/sub/x"
    assert site.verified_release is None and site.contract == 1


def test_reader_refuses_a_broken_contract() -> None:
    with pytest.raises(jsonschema.ValidationError):
        _read({**LIVE, "database": {**LIVE["database"], "password": "hunter2"}})
